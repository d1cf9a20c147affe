"""Decoding: the one place frames come from (frames.py is the public door), the PyAV session and its two
passes, H.264 NAL inspection, and decoding ahead of the model in a thread.

May import: vigil
"""
