"""Clinician accounts: password hashing and policy, sign-in with lockout, web sessions; against
real databases (both), with the clock passed in."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import Clinician, WebSession
from app.db.session import session_factory
from app.services import accounts
from app.services.accounts import PasswordRejected, SignInRefused, Verified

NOW = datetime(2026, 11, 22, 9, 0, 30, tzinfo=UTC)
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's
CURRENT_PARAMETERS = "$argon2id$v=19$m=65536,t=3,p=4$"


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


@pytest.fixture
def ng(db: Session) -> Clinician:
    clinician = accounts.create_clinician(db, " Dr.Ng ", "Dr Ng", PASSWORD, NOW)
    db.commit()
    return clinician


def _refusal(db: Session, username: str, password: str, now: datetime) -> str:
    """Sign in expecting a refusal, committed as the web form must (the count is kept)."""
    with pytest.raises(SignInRefused) as refused:
        accounts.sign_in(db, username, password, now)
    db.commit()
    return refused.value.message


def _stored(db: Session, clinician: Clinician) -> Clinician:
    """The clinician as the database has it now."""
    db.expire_all()
    found = db.get(Clinician, clinician.id)
    assert found is not None
    return found


def _sessions(db: Session) -> list[WebSession]:
    db.expire_all()
    return list(db.scalars(select(WebSession)))


# Passwords


def test_hashes_are_argon2id_with_the_rfc_9106_low_memory_parameters() -> None:
    first, second = accounts.hash_password(PASSWORD), accounts.hash_password(PASSWORD)
    assert first.startswith(CURRENT_PARAMETERS)
    assert first != second  # salted
    assert accounts.verify_password(first, PASSWORD) == Verified(ok=True, needs_rehash=False)
    assert accounts.verify_password(first, PASSWORD + " ") == Verified(False, False)
    assert accounts.verify_password("not a hash", PASSWORD) == Verified(False, False)


def test_passwords_compare_after_unicode_normalisation() -> None:
    composed = "café au lait, sans sucre"  # é as one code point
    decomposed = "cafe\u0301 au lait, sans sucre"  # e + combining acute accent
    assert accounts.verify_password(accounts.hash_password(composed), decomposed).ok


def test_a_password_longer_than_the_policy_allows_never_matches() -> None:
    long = "x" * 257
    stored = PasswordHasher().hash(long)  # made around the policy, as an attacker could not
    assert accounts.verify_password(stored, long) == Verified(False, False)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("fourteen chars", "too short: use at least 15 characters"),
        ("y" * 257, "too long: use at most 256 characters"),
        ("my name is DR.NG, hello", "must not contain the user name"),
        ("Dr.Ng" * 3, "must not contain the user name"),
    ],
)
def test_the_policy_refuses(password: str, message: str) -> None:
    with pytest.raises(PasswordRejected, match=message):
        accounts.check_password(password, "dr.ng")


@pytest.mark.parametrize(
    "password", ["fifteen chars!!", "z" * 256, "1234567890 12345", "dr.n g is not it"]
)
def test_the_policy_accepts_length_without_composition_rules(password: str) -> None:
    accounts.check_password(password, "dr.ng")


def test_a_password_equal_to_the_user_name_is_refused() -> None:
    with pytest.raises(PasswordRejected, match="user name"):
        accounts.check_password("Ward7.Registrar", "ward7.registrar")


# Accounts


def test_create_normalises_the_user_name(db: Session, ng: Clinician) -> None:
    stored = _stored(db, ng)
    assert stored.username == "dr.ng"
    assert stored.display_name == "Dr Ng"
    assert stored.password_hash.startswith(CURRENT_PARAMETERS)
    assert PASSWORD not in stored.password_hash
    assert stored.created_at == NOW
    assert stored.password_changed_at == NOW
    assert stored.failed_attempts == 0
    assert (stored.disabled_at, stored.locked_until, stored.last_sign_in_at) == (None, None, None)
    assert len(stored.id) == 36


@pytest.mark.parametrize("username", ["", "   ", "-ng", "dr ng", "dr.ñg", "n" * 101, "ng/1"])
def test_create_refuses_a_bad_user_name(db: Session, username: str) -> None:
    with pytest.raises(ValueError, match="a user name is 1 to 100 characters"):
        accounts.create_clinician(db, username, "Someone", PASSWORD, NOW)


def test_create_refuses_a_taken_user_name_whatever_its_case(db: Session, ng: Clinician) -> None:
    with pytest.raises(ValueError, match=r"the user name 'dr\.ng' is already taken"):
        accounts.create_clinician(db, "DR.NG", "Another Ng", "another long password", NOW)
    assert ng.username == "dr.ng"


def test_create_refuses_a_weak_password_and_adds_nobody(db: Session) -> None:
    with pytest.raises(PasswordRejected, match="too short"):
        accounts.create_clinician(db, "lee", "Dr Lee", "short", NOW)
    db.commit()
    assert list(db.scalars(select(Clinician))) == []


# Signing in


def test_sign_in_succeeds_and_resets_the_failure_count(db: Session, ng: Clinician) -> None:
    assert _refusal(db, "dr.ng", "wrong password, surely", NOW) == accounts.WRONG
    assert _stored(db, ng).failed_attempts == 1
    later = NOW + timedelta(minutes=1)
    assert accounts.sign_in(db, "  DR.NG", PASSWORD, later) is ng
    db.commit()
    stored = _stored(db, ng)
    assert stored.failed_attempts == 0
    assert stored.last_sign_in_at == later


def test_unknown_user_and_wrong_password_get_the_same_message(db: Session, ng: Clinician) -> None:
    unknown = _refusal(db, "dr.nobody", PASSWORD, NOW)
    wrong = _refusal(db, ng.username, "not the right password", NOW)
    assert unknown == wrong == "wrong user name or password"


def test_an_unknown_user_name_costs_a_verification(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real = accounts.verify_password

    def spy(password_hash: str, password: str) -> Verified:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", spy)
    _refusal(db, "dr.nobody", PASSWORD, NOW)
    _refusal(db, "dr.nobody-else", PASSWORD, NOW)
    assert len(verified) == 2
    assert verified[0] == verified[1]  # one fixed hash
    assert verified[0].startswith(CURRENT_PARAMETERS)  # as costly as a real one


def test_ten_failures_lock_the_account_for_fifteen_minutes(db: Session, ng: Clinician) -> None:
    for attempt in range(9):
        assert _refusal(db, "dr.ng", f"wrong guess number {attempt}", NOW) == accounts.WRONG
    assert _stored(db, ng).failed_attempts == 9
    tenth = _refusal(db, "dr.ng", "wrong guess number 10", NOW)
    # Locked until 09:15:30, so "after 09:16" (rounded up, never before the end).
    assert tenth == "too many failed attempts; try again after 09:16 UTC"
    stored = _stored(db, ng)
    assert stored.locked_until == NOW + timedelta(minutes=15)
    assert stored.failed_attempts == 0

    almost = NOW + timedelta(minutes=14, seconds=59)
    assert _refusal(db, "dr.ng", PASSWORD, almost) == tenth  # the right password, still locked
    assert _refusal(db, "dr.ng", "another wrong guess", almost) == tenth
    assert _stored(db, ng).failed_attempts == 0  # guesses while locked don't count

    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW + timedelta(minutes=15)) is ng
    db.commit()
    stored = _stored(db, ng)
    assert (stored.locked_until, stored.failed_attempts) == (None, 0)


def test_after_a_lockout_the_count_starts_again(db: Session, ng: Clinician) -> None:
    for attempt in range(10):
        _refusal(db, "dr.ng", f"wrong guess number {attempt}", NOW)
    after = NOW + timedelta(minutes=16)
    assert _refusal(db, "dr.ng", "wrong once more", after) == accounts.WRONG
    assert _stored(db, ng).failed_attempts == 1


def test_failures_counted_meanwhile_by_another_request_are_not_lost(
    engine: Engine, db: Session, ng: Clinician
) -> None:
    db.expire_all()
    stale = db.get(Clinician, ng.id)  # read before the other request's failure
    assert stale is not None
    assert stale.failed_attempts == 0
    with session_factory(engine)() as other:
        _refusal(other, "dr.ng", "a wrong guess elsewhere", NOW)
    with pytest.raises(SignInRefused):
        accounts.sign_in(db, "dr.ng", "a wrong guess here", NOW)
    db.commit()
    assert _stored(db, ng).failed_attempts == 2


def test_a_disabled_clinician_is_refused_with_the_generic_message(
    db: Session, ng: Clinician
) -> None:
    assert accounts.disable(db, ng, NOW)
    assert not accounts.disable(db, ng, NOW)  # already
    db.commit()
    assert _refusal(db, "dr.ng", PASSWORD, NOW) == accounts.WRONG
    assert accounts.enable(ng)
    assert not accounts.enable(ng)
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW) is ng


def test_unlock_lifts_a_lockout(db: Session, ng: Clinician) -> None:
    for attempt in range(10):
        _refusal(db, "dr.ng", f"wrong guess number {attempt}", NOW)
    accounts.unlock(_stored(db, ng))
    db.commit()
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW + timedelta(minutes=1)) is ng


def test_an_outdated_hash_is_upgraded_at_sign_in(db: Session, ng: Clinician) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    ng.password_hash = weak.hash(PASSWORD)
    db.commit()
    assert accounts.verify_password(ng.password_hash, PASSWORD) == Verified(True, True)
    _refusal(db, "dr.ng", "a wrong password here", NOW)
    assert _stored(db, ng).password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")

    accounts.sign_in(db, "dr.ng", PASSWORD, NOW)
    db.commit()
    stored = _stored(db, ng)
    assert stored.password_hash.startswith(CURRENT_PARAMETERS)
    assert accounts.verify_password(stored.password_hash, PASSWORD) == Verified(True, False)
    assert stored.password_changed_at == NOW  # the same password, only hashed again


# Sessions


def test_only_the_tokens_hash_is_stored(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    assert len(token) == 43
    (row,) = _sessions(db)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.token_hash, row.clinician_id}
    assert row.clinician_id == ng.id
    assert (row.created_at, row.last_seen_at) == (NOW, NOW)
    assert row.expires_at == NOW + timedelta(hours=12)
    assert accounts.start_session(db, ng, NOW, max_hours=12) != token
    assert accounts.session_user(db, token, NOW + timedelta(minutes=5), 30) is ng


def test_a_session_ends_when_unused_too_long(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    assert accounts.session_user(db, token, NOW + timedelta(minutes=30), 30) is ng
    db.commit()
    too_late = NOW + timedelta(minutes=60, seconds=1)
    assert accounts.session_user(db, token, too_late, 30) is None
    db.commit()
    assert _sessions(db) == []
    assert accounts.session_user(db, token, NOW + timedelta(minutes=31), 30) is None


def test_a_session_ends_at_its_absolute_end_however_active(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=1)
    for minutes in range(10, 60, 10):
        assert accounts.session_user(db, token, NOW + timedelta(minutes=minutes), 30) is ng
    db.commit()
    assert accounts.session_user(db, token, NOW + timedelta(hours=1), 30) is None
    db.commit()
    assert _sessions(db) == []


def test_last_seen_is_written_at_most_once_a_minute(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    assert accounts.session_user(db, token, NOW + timedelta(seconds=60), 30) is ng
    db.commit()
    assert _sessions(db)[0].last_seen_at == NOW
    assert not db.dirty
    later = NOW + timedelta(seconds=61)
    assert accounts.session_user(db, token, later, 30) is ng
    db.commit()
    assert _sessions(db)[0].last_seen_at == later


def test_disabling_ends_the_clinicians_sessions(db: Session, ng: Clinician) -> None:
    other = accounts.create_clinician(db, "lee", "Dr Lee", "a different long password", NOW)
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    kept = accounts.start_session(db, other, NOW, max_hours=12)
    db.commit()
    accounts.disable(db, ng, NOW)
    db.commit()
    assert [row.clinician_id for row in _sessions(db)] == [other.id]
    assert accounts.session_user(db, token, NOW, 30) is None
    assert accounts.session_user(db, kept, NOW, 30) is other


def test_a_session_of_a_clinician_disabled_behind_its_back_is_refused(
    db: Session, ng: Clinician
) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    ng.disabled_at = NOW  # e.g. by another process, without ending the sessions
    db.commit()
    assert accounts.session_user(db, token, NOW, 30) is None
    db.commit()
    assert _sessions(db) == []


def test_a_password_change_ends_the_sessions(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    with pytest.raises(PasswordRejected):
        accounts.set_password(db, ng, "too short", NOW)
    assert accounts.session_user(db, token, NOW, 30) is ng
    later = NOW + timedelta(hours=1)
    accounts.set_password(db, ng, "a brand new passphrase", later)
    db.commit()
    assert _sessions(db) == []
    assert accounts.session_user(db, token, later, 30) is None
    stored = _stored(db, ng)
    assert stored.password_changed_at == later
    assert accounts.verify_password(stored.password_hash, "a brand new passphrase").ok
    assert not accounts.verify_password(stored.password_hash, PASSWORD).ok


@pytest.mark.parametrize(
    "token",
    [None, "", "x" * 101, "y" * 100_000, "not a token!", "\udcff", "a\x00b", "A" * 43],
)
def test_garbage_tokens_are_no_one(db: Session, ng: Clinician, token: str | None) -> None:
    accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    assert accounts.session_user(db, token, NOW, 30) is None
    accounts.end_session(db, token)
    db.commit()
    assert len(_sessions(db)) == 1


def test_ending_a_session_signs_out(db: Session, ng: Clinician) -> None:
    token = accounts.start_session(db, ng, NOW, max_hours=12)
    kept = accounts.start_session(db, ng, NOW, max_hours=12)
    db.commit()
    accounts.end_session(db, token)
    accounts.end_session(db, token)  # twice is fine
    db.commit()
    assert accounts.session_user(db, token, NOW, 30) is None
    assert accounts.session_user(db, kept, NOW, 30) is ng


def test_purge_deletes_only_the_sessions_that_can_no_longer_be_used(
    db: Session, ng: Clinician
) -> None:
    idle = accounts.start_session(db, ng, NOW, max_hours=12)
    ended = accounts.start_session(db, ng, NOW - timedelta(hours=2), max_hours=1)
    fresh = accounts.start_session(db, ng, NOW + timedelta(minutes=20), max_hours=12)
    db.commit()
    assert accounts.purge_sessions(db, NOW + timedelta(minutes=31), idle_minutes=30) == 2
    db.commit()
    remaining = [row.token_hash for row in _sessions(db)]
    assert remaining == [hashlib.sha256(fresh.encode()).hexdigest()]
    assert idle != ended
