"""The one typed settings tree (defaults < `vigil.toml` < `VIGIL_*` < overrides), its sections, the
semantic checks its validators call, and the two small languages settings values are written in: rule
schedules (hours, time zones) and message templates. They live here, not in `alerts`, because the
settings must check them and everything above reads the settings.

May import: vigil.errors, vigil.terminal, vigil.formats
"""
