"""Alerts: compiled rules and their sync from settings, matching detections, the storm guards,
evaluation, rules that fire on events (a camera offline, disk pressure: `events`), the outbox, channels and
delivery, the detection feed and the Home Assistant bridge.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops,
vigil.media, vigil.feedback, vigil.sql, vigil.web
"""
