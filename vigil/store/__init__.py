"""The one database: engines and sessions (SQLite embedded, PostgreSQL at scale), the SQLAlchemy schema,
Alembic driven from the settings, and the generated schema document.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config
"""
