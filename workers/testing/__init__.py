"""Test material built here, never downloaded: clips from real encoders, tiny random models of the real
architectures, recordings and scenes. Used by tests, benchmarks and `vigil selftest`.

May import: vigil, workers
"""
