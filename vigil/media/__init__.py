"""The media lifecycle, from the rows: registering files as versions, every status change (lifecycle.py
is the one owner), settling reports, the reconciler that finds work the broker lost, backfill and
re-analysis, drop-folder automation and progress summaries.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops
"""
