"""API clients: created with a one-time token, looked up by id, revoked (never deleted, so the
audit trail can always name who asked)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.db.models import ApiClient
from app.security import Credential, Scope, new_credential


def create(session: Session, name: str, scopes: Iterable[Scope]) -> tuple[ApiClient, Credential]:
    credential = new_credential()
    client = ApiClient(
        id=credential.client_id,
        name=name,
        secret_hash=credential.secret_hash,
        scopes=sorted({str(s) for s in scopes}),
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    session.add(client)
    return client, credential


def all_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.created_at)))


def find(session: Session, client_id: str) -> ApiClient | None:
    return session.get(ApiClient, client_id)


def credential(client_id: str) -> Select[str, str, list[str], datetime | None]:
    """What authenticating a request needs of a client, as one row (no ORM object)."""
    return select(
        ApiClient.name, ApiClient.secret_hash, ApiClient.scopes, ApiClient.revoked_at
    ).where(ApiClient.id == client_id)


def revocation(client_id: str) -> Select[datetime | None]:
    """The client's `revoked_at` (no row: no such client)."""
    return select(ApiClient.revoked_at).where(ApiClient.id == client_id)


def names(session: Session, ids: Iterable[str]) -> dict[str, str]:
    statement = select(ApiClient.id, ApiClient.name).where(ApiClient.id.in_(set(ids)))
    return {i: n for i, n in session.execute(statement).all()}


def revoke(client: ApiClient) -> bool:
    """Revoke; False if it already was."""
    if client.revoked_at is not None:
        return False
    client.revoked_at = datetime.now(UTC)
    return True
