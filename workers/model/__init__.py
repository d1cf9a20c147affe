"""The model: loading it once (hub, adapters per family), the question prompts, reference-image suffixes,
calibrated scoring over one video encoding, window batches, generation, dialogue and the best frame.

May import: vigil, workers.decode
"""
