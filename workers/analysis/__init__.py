"""One analysis run: the worker's runtime, the recogniser pipeline over windows, the static gate,
thumbnails, the version check and storing results in one commit.

May import: vigil, workers.decode, workers.model
"""
