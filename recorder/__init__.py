"""The recorder: a light process (PyAV, no torch) that records each stream source (`[[watch.sources]]`
with a `url`) into segments cut at keyframes, copied packet by packet without re-encoding, each written
under a temporary name in the source's folder and renamed when complete, so the watcher registers it
through the one path every file takes. It owns only connection state: reconnecting with back-off and
jitter, the outage rows (`vigil.media.outages`) and the streams' metrics.

May import: vigil
"""
