"""The declared configuration: the sources, targets and rules a settings file names, applied to the
database the same way by every process at start, and who owns each row (a file or the database). It
writes across the media and alert domains, so it sits above both.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops,
vigil.media, vigil.feedback, vigil.sql, vigil.web, vigil.alerts
"""
