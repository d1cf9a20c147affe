"""Alerts: rule schedules, compiled rules and their sync from settings, matching detections, the storm
guards, evaluation, the outbox, channels and delivery."""
