"""Clinician accounts for the web form: passwords, sign-in with lockout, server-side sessions.

Passwords follow NIST SP 800-63B-4 for a single-factor password: length is what protects
(15 to 256 characters), with no composition rules and no forced periodic change; a password
holding the user name is refused. They are compared after Unicode NFKC normalisation, as the
guideline recommends, so the same password typed on another keyboard or system still matches.
Hashes are Argon2id at argon2-cffi's defaults, RFC 9106's low-memory profile (t=3, 64 MiB,
p=4); a hash made with other parameters is upgraded at the next successful sign-in, the only
moment the password is known.

Failed sign-ins pause guessing where it comes from, never the account as a whole: anyone can
type a clinician's name, so a lockout per account would let anyone lock them out, from
anywhere, again and again. Counted per (user name, source): MAX_FAILED_ATTEMPTS within WINDOW
pause that name from that source for LOCKOUT; and per source whatever the names, so that one
source trying many names is slowed too: MAX_SOURCE_FAILURES within WINDOW pause it for
LOCKOUT. Names that exist and names that do not are counted alike, and every refusal (unknown
name, wrong password, disabled account, paused) gets the same words, the same status and the
same Argon2 work: nothing tells which names exist.

A session cookie carries 256 random bits; only their SHA-256 is stored, as for API tokens
(app/security.py): a slow hash adds nothing against guessing 256 random bits. A session ends
at its absolute `expires_at`, earlier when unused for `idle_minutes`, and at once when the
clinician's password changes or the clinician is disabled.

Every time comes in as `now`, so tests control the clock. Nothing here commits; note that a
refused sign-in has changed the failure count, so its caller must still commit (answer the
refusal normally rather than let the exception roll the request back).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from app.db import accounts as repository
from app.db.accounts import ANY_ACCOUNT
from app.db.models import Clinician, WebSession

HASHER = PasswordHasher()  # Argon2id, RFC 9106's low-memory profile: keep the defaults
MIN_PASSWORD_LENGTH = 15  # SP 800-63B-4, a password used as the only factor
MAX_PASSWORD_LENGTH = 256  # bounds the hashing work one request can ask for
MAX_FAILED_ATTEMPTS = 10  # per user name and source, within WINDOW
MAX_SOURCE_FAILURES = 100  # per source, whatever the user names, within WINDOW
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
SEEN_WRITE_INTERVAL = timedelta(seconds=60)  # last_seen_at is written at most this often
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,99}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}")  # token_urlsafe's alphabet, 43 characters in use
MAX_DISPLAY_NAME = 200
WRONG = (
    "wrong user name or password; after repeated failures, signing in from this device "
    f"pauses for {LOCKOUT.seconds // 60} minutes"
)


class PasswordRejected(ValueError):
    """A new password the policy refuses; the message says why, for the person choosing it."""


class SignInRefused(Exception):
    """A refused sign-in. Its message can be shown as it is: it is WRONG whatever the reason
    (an unknown user, a wrong password, a disabled account, a pause), so it never tells which
    names exist."""

    def __init__(self) -> None:
        super().__init__(WRONG)
        self.message = WRONG


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    needs_rehash: bool  # the hash's parameters are not the current ones: hash again


def normalise_username(username: str) -> str:
    return username.strip().casefold()


def check_password(password: str, username: str) -> None:
    """Raise PasswordRejected unless `password` is acceptable as a new password for
    `username`. Length is measured in characters (code points) after normalisation."""
    prepared = _prepared(password)
    if len(prepared) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a passphrase of several words is easiest to remember)"
        )
    if len(prepared) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters"
        )
    name = normalise_username(username)
    if name and name in prepared.casefold():
        raise PasswordRejected("the password must not contain the user name")


def hash_password(password: str) -> str:
    """An Argon2id PHC string (parameters and salt included)."""
    return HASHER.hash(_prepared(password))


def verify_password(password_hash: str, password: str) -> Verified:
    """Whether `password` matches, and whether its hash should be remade. A password longer
    than any the policy accepts cannot match, and is refused without the cost of hashing."""
    prepared = _prepared(password)
    if len(prepared) > MAX_PASSWORD_LENGTH:
        return Verified(ok=False, needs_rehash=False)
    try:
        HASHER.verify(password_hash, prepared)
    except (VerificationError, InvalidHashError):
        return Verified(ok=False, needs_rehash=False)
    return Verified(ok=True, needs_rehash=HASHER.check_needs_rehash(password_hash))


def find_clinician(session: Session, username: str) -> Clinician | None:
    return repository.find_by_username(session, normalise_username(username))


def create_clinician(
    session: Session, username: str, display_name: str, password: str, now: datetime
) -> Clinician:
    """A new, enabled clinician. ValueError (PasswordRejected for the password) says what is
    wrong with the user name, display name or password."""
    name = _checked_username(username)
    display = display_name.strip()
    if not display or len(display) > MAX_DISPLAY_NAME:
        raise ValueError(f"the display name must be 1 to {MAX_DISPLAY_NAME} characters")
    if repository.find_by_username(session, name) is not None:
        raise ValueError(f"the user name {name!r} is already taken")
    check_password(password, name)
    clinician = Clinician(
        id=str(uuid.uuid4()),
        username=name,
        display_name=display,
        password_hash=hash_password(password),
        created_at=now,
        disabled_at=None,
        last_sign_in_at=None,
        password_changed_at=now,
    )
    repository.add_clinician(session, clinician)
    return clinician


def sign_in(
    session: Session, username: str, password: str, now: datetime, source: str
) -> Clinician:
    """The clinician these credentials belong to, or SignInRefused. `source` is where the
    attempt comes from (the client's address, see app.api.web_auth.client_source). The
    failure counts it changes must be committed even when it refuses (see the module's
    docstring)."""
    account = account_key(username)
    paused = repository.paused(session, [(account, source), (ANY_ACCOUNT, source)], now)
    clinician = None if paused else _existing(session, username)
    # The same Argon2 work whatever follows (a hash with the current parameters when there is
    # no clinician to check): the time taken tells nothing either.
    verified = verify_password(
        clinician.password_hash if clinician is not None else _dummy_hash(), password
    )
    if paused:
        raise SignInRefused  # guesses while paused don't count
    if clinician is None or clinician.disabled_at is not None or not verified.ok:
        _fail(session, account, source, now)
    repository.forget_failures(session, account, source)
    # Housekeeping at a moment that is rare and not hurried: counts that would restart anyway.
    repository.delete_stale_failures(session, now - WINDOW, now)
    clinician.last_sign_in_at = now
    if verified.needs_rehash:
        clinician.password_hash = hash_password(password)
    return clinician


def account_key(username: str) -> str:
    """What failures of a user name are counted under: the SHA-256 of the name as normalised,
    whether or not such a clinician exists."""
    return hashlib.sha256(normalise_username(username).encode("utf-8", "surrogatepass")).hexdigest()


def _existing(session: Session, username: str) -> Clinician | None:
    # A name that could not have been created (a NUL, a space, a surrogate...) names no one,
    # and never reaches the database.
    name = normalise_username(username)
    return repository.find_by_username(session, name) if USERNAME.fullmatch(name) else None


def paused_from(
    session: Session, clinician: Clinician, now: datetime
) -> list[tuple[str, datetime]]:
    """The sources from which signing in as `clinician` is paused at `now`, and until when."""
    rows = repository.pauses_of(session, account_key(clinician.username), now)
    return [(row.source, row.blocked_until) for row in rows if row.blocked_until is not None]


def set_password(session: Session, clinician: Clinician, password: str, now: datetime) -> None:
    """Replace the password (PasswordRejected if the policy refuses it) and end every session:
    whoever knew the old one is signed out."""
    check_password(password, clinician.username)
    clinician.password_hash = hash_password(password)
    clinician.password_changed_at = now
    end_all_sessions(session, clinician)


def disable(session: Session, clinician: Clinician, now: datetime) -> bool:
    """Refuse the clinician's sign-ins and end their sessions; False if already disabled."""
    end_all_sessions(session, clinician)
    if clinician.disabled_at is not None:
        return False
    clinician.disabled_at = now
    return True


def enable(clinician: Clinician) -> bool:
    """Allow sign-ins again; False if the clinician was not disabled."""
    if clinician.disabled_at is None:
        return False
    clinician.disabled_at = None
    return True


def unlock(session: Session, clinician: Clinician) -> int:
    """Lift the pauses on signing in as `clinician`, from every source, and those sources'
    pauses against every name; forget the failures counted (an administrator vouched for the
    person). How many counts went."""
    return repository.forget_account(session, account_key(clinician.username))


def start_session(session: Session, clinician: Clinician, now: datetime, max_hours: int) -> str:
    """A new session's token, for the cookie. Only its hash is stored."""
    token = secrets.token_urlsafe(32)
    web_session = WebSession(
        token_hash=_token_hash(token),
        clinician=clinician,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=max_hours),
    )
    repository.add_session(session, web_session)
    return token


def session_user(
    session: Session, token: str | None, now: datetime, idle_minutes: int
) -> Clinician | None:
    """The clinician signed in with `token`, or None: no such session, past its end, unused
    too long, or the clinician disabled (then the row is deleted). Any string is safe to pass,
    e.g. a cookie as received."""
    if token is None or not TOKEN.fullmatch(token):
        return None
    row = repository.get_session(session, _token_hash(token))
    if row is None:
        return None
    clinician = row.clinician
    idle = now - row.last_seen_at > timedelta(minutes=idle_minutes)
    if now >= row.expires_at or idle or clinician.disabled_at is not None:
        repository.delete_session(session, row.token_hash)
        return None
    # Writing on every request would make each page view a write; a minute's precision is
    # plenty for an idle limit counted in minutes.
    if now - row.last_seen_at > SEEN_WRITE_INTERVAL:
        row.last_seen_at = now
    return clinician


def end_session(session: Session, token: str | None) -> None:
    """Sign out: the session is gone whether or not it existed."""
    if token is not None and TOKEN.fullmatch(token):
        repository.delete_session(session, _token_hash(token))


def end_all_sessions(session: Session, clinician: Clinician) -> int:
    return repository.delete_sessions_of(session, clinician.id)


def purge_sessions(session: Session, now: datetime, idle_minutes: int) -> int:
    """Delete the sessions that can no longer be used (housekeeping; `session_user` refuses
    them anyway). How many there were."""
    return repository.delete_expired_sessions(
        session, now, idle_since=now - timedelta(minutes=idle_minutes)
    )


def _fail(session: Session, account: str, source: str, now: datetime) -> NoReturn:
    """Count a failure for the name from this source and for the source, and refuse. The
    last failure a count allows pauses it and starts it again, so after the pause there are
    as many tries as before. Always in this order: concurrent sign-ins lock the rows in the
    same order, so they wait for each other rather than deadlock."""
    for key, limit in (
        ((account, source), MAX_FAILED_ATTEMPTS),
        ((ANY_ACCOUNT, source), MAX_SOURCE_FAILURES),
    ):
        if repository.count_failure(session, *key, now, now - WINDOW) >= limit:
            repository.pause(session, *key, now + LOCKOUT, now)
    raise SignInRefused


def _checked_username(username: str) -> str:
    name = normalise_username(username)
    if not USERNAME.fullmatch(name):
        raise ValueError(
            "a user name is 1 to 100 characters: lower-case letters, digits and . _ @ -, "
            f"starting with a letter or digit (not {username!r})"
        )
    return name


def _prepared(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@cache
def _dummy_hash() -> str:
    """A hash of no one's password, made once with the current parameters."""
    return HASHER.hash(secrets.token_urlsafe(32))
