"""The watcher: a light daemon (watchdog) that notices files, decides when each is completely written,
registers it and enqueues its analysis. It never imports torch, transformers or the workers.

May import: vigil
"""
