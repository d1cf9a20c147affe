"""Vigil's torch-free core: one folder per subsystem, each importing only the ones below it.

From the bottom up (each package's `__init__` says what it owns and, in its `May import:` line, what it
may import; tests/test_layers.py holds every module to those lines and proves the packages form no
circle):

    errors, terminal   the error hierarchy and terminal-safe text (root modules every layer may use)
    formats            what a file is: media types, the quick probe, reference images
    config             the settings tree, its checks, and the small languages its values are written in
    store              engines, schema, migrations, the schema doc
    ops                the processes and the wire between them: Celery app, broker, enqueue, logs, metrics
    media / feedback / sql   the media lifecycle; verdicts and thresholds; the read-only SQL door
    web                the review page
    alerts             rules, matching, outbox, channels, delivery, the Home Assistant bridge
    declared           the settings files' sources, targets and rules applied to the database
    cli                the composition root: the only place that wires the core, the watcher and the workers

May import: (nothing of Vigil's)
"""
