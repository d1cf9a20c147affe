"""A forked child never talks on its parent's database connection (prefork workers fork after using it)."""

from __future__ import annotations

import os

from sqlalchemy import text

from vigil.config.settings import DatabaseSettings
from vigil.store.db import make_engine


def _backend_pid_in_child(engine: object) -> int:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: one query, its server pid down the pipe, and out without cleanup
        code = 1
        try:
            with engine.connect() as connection:  # type: ignore[attr-defined]
                os.write(write, str(connection.scalar(text("SELECT pg_backend_pid()"))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    answer = os.read(read, 64)
    os.close(read)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return int(answer)


def test_a_forked_child_opens_its_own_connection_and_the_parents_stays_usable(pg_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    try:
        with engine.connect() as connection:  # pooled on return, as the worker's parent leaves it
            parent_pid = connection.scalar(text("SELECT pg_backend_pid()"))
        children = {_backend_pid_in_child(engine) for _ in range(2)}
        assert parent_pid not in children  # a shared socket would answer with the parent's backend
        assert len(children) == 2
        with engine.connect() as connection:  # the children neither closed nor garbled it
            assert connection.scalar(text("SELECT pg_backend_pid()")) == parent_pid
    finally:
        engine.dispose()
