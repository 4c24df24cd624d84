"""Credentials and pseudonyms: API client tokens, scopes, and keyed patient pseudonyms.

A token is `eligo_<client id>_<secret>`. The id finds the client without a scan; the secret
(256 random bits) is stored only as its SHA-256. A slow password hash would add nothing
against guessing a 256-bit secret and would cost every request its time; it is what GitHub
and Stripe do with their API tokens for the same reason.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

TOKEN_PREFIX = "eligo"  # noqa: S105 - a prefix, not a secret
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{32}})_([A-Za-z0-9_-]{{43}})$")


class Scope(StrEnum):
    EVALUATE = "evaluate"
    SCREEN = "screen"
    AUDIT_READ = "audit:read"
    RULES_ADMIN = "rules:admin"


@dataclass(frozen=True, slots=True)
class Credential:
    """A client id and the token to give it, shown once; only `secret_hash` is stored."""

    client_id: str
    token: str
    secret_hash: str


def new_credential() -> Credential:
    client_id = uuid.uuid4().hex
    secret = secrets.token_urlsafe(32)  # 43 characters
    return Credential(client_id, f"{TOKEN_PREFIX}_{client_id}_{secret}", hash_secret(secret))


def parse_token(token: str) -> tuple[str, str] | None:
    """(client id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def pseudonym(key: bytes, identifier: str) -> str:
    """A stable pseudonym for a patient identifier: the same patient links across records,
    and without the key it cannot be reversed or checked against a guessed identifier."""
    return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()
