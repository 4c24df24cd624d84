"""`eligo clients ...`: API clients and their scopes (ELIGO_DATABASE_URL).

A token is printed once, at creation, and only its hash is stored: lose it and create a new
client. Clients are revoked, never deleted, so the audit trail can always name who asked.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from app.cli.common import database_session, fail
from app.security import Scope

# The repository and its SQLAlchemy models are imported inside the commands (app/cli/common.py).
if TYPE_CHECKING:
    from app.db.models import ApiClient

SCOPES = [s.value for s in Scope]


@click.group()
def clients() -> None:
    """API clients: create (token shown once), list, revoke."""


@clients.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="Grant this scope (repeatable)",
)
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a client NAME and print its token, once."""
    from app.db import clients as repository  # noqa: PLC0415

    if not name.strip() or len(name) > 200:
        fail("NAME must be 1 to 200 characters")
    with database_session() as session:
        client, credential = repository.create(session, name.strip(), map(Scope, scopes))
    click.echo(f"created client {client.id} ({client.name}) with scopes {' '.join(client.scopes)}")
    click.echo("token (shown once, store it now; only its hash is kept):", err=True)
    click.echo(credential.token)


def _row(client: ApiClient) -> dict[str, object]:
    return {
        "id": client.id,
        "name": client.name,
        "scopes": client.scopes,
        "created_at": client.created_at.isoformat(),
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
    }


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
def list_clients(as_json: bool) -> None:
    """List clients, revoked ones included (never their secrets)."""
    from app.db import clients as repository  # noqa: PLC0415

    with database_session() as session:
        found = repository.all_clients(session)
    if as_json:
        click.echo(json.dumps([_row(c) for c in found], indent=2))
        return
    for client in found:
        state = f"revoked {client.revoked_at.isoformat()}" if client.revoked_at else "active"
        click.echo(f"{client.id}  {client.name}  [{' '.join(client.scopes)}]  {state}")


@clients.command("revoke")
@click.argument("client_id")
def revoke(client_id: str) -> None:
    """Revoke CLIENT_ID: its token stops working at once."""
    from app.db import clients as repository  # noqa: PLC0415

    with database_session() as session:
        client = repository.find(session, client_id)
        if client is None:
            fail(f"no client {client_id!r}; see `eligo clients list`")
        if not repository.revoke(client):
            fail(f"client {client_id} was already revoked")
    click.echo(f"revoked {client_id}")
