"""Writes held until the session commits, then run in the order they were asked for.

The audit trail is written this way, with Core INSERTs rather than ORM objects: the unit of
work's bookkeeping (identity map, dependency sort, per-object state) was about a fifth of the
CPU time of a recorded evaluation, for rows nothing reads back before the commit. Holding the
writes until the commit keeps what the ORM's flush-at-commit gave: on SQLite a session's whole
write happens inside the commit (one short write lock, taken under the process's commit lock,
never held while a request is still computing), and rows are written in the order their
foreign keys need (a rule set version, then the decisions that refer to it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult, Executable, event
from sqlalchemy.orm import Session

_PENDING = "eligo.writes"
_GUARDED = "eligo.client-guarded"
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]
Check = Callable[[CursorResult[Any]], None]


def at_commit(
    session: Session,
    statement: Executable,
    params: Params | None = None,
    check: Check | None = None,
) -> None:
    """Run `statement` (with `params`: one row, or several as an executemany) when `session`
    commits, after the writes asked for before it and before the ORM's own flush. A Core
    statement (an INSERT into a Table, not an ORM entity). `check` is given its result and
    raises to fail the commit (a guarded write that wrote nothing)."""
    pending: list[tuple[Executable, Params | None, Check | None]] = session.info.setdefault(
        _PENDING, []
    )
    pending.append((statement, params, check))


def guards_client(session: Session) -> None:
    """Say that a write held here confirms, in its own statement, that the request's API
    client is still active (and fails the commit otherwise): the separate confirming query
    at the transaction's start (api.deps) is then not needed."""
    session.info[_GUARDED] = True


def client_guarded(session: Session) -> bool:
    return bool(session.info.get(_GUARDED))


def anything_to_commit(session: Session) -> bool:
    """An open transaction, ORM changes, or writes waiting here: otherwise a commit would only
    cost a BEGIN and a COMMIT."""
    return bool(
        session.in_transaction()
        or session.new
        or session.dirty
        or session.deleted
        or session.info.get(_PENDING)
    )


def _write(session: Session) -> None:
    writes = session.info.pop(_PENDING, None)
    if not writes:
        return
    # On the session's connection, not through Session.execute: an INSERT of an ORM entity
    # there takes the ORM's bulk path, which cost more than the statement itself.
    connection = session.connection()
    for statement, params, check in writes:
        result = connection.execute(statement, params)
        if check is not None:
            check(result)
    session.info.pop(_GUARDED, None)  # it vouched for this transaction's writes only


def _forget(session: Session, _previous: object) -> None:
    """A rollback drops what was asked for in the transaction that ended."""
    session.info.pop(_PENDING, None)
    session.info.pop(_GUARDED, None)


# On every session, once: a listener added per session cost more than the write it ran
# (SQLAlchemy's event registry), and with nothing pending each is a dictionary lookup.
event.listen(Session, "before_commit", _write)
event.listen(Session, "after_soft_rollback", _forget)
