"""Clinician accounts: password hashing and policy, sign-in with failures counted per name and
source, web sessions; against real databases (both), with the clock passed in."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.accounts import ANY_ACCOUNT
from app.db.models import Clinician, SignInThrottle, WebSession
from app.db.session import session_factory
from app.services import accounts
from app.services.accounts import WRONG, PasswordRejected, SignInRefused, Verified

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


def _refusal(
    db: Session, username: str, password: str, now: datetime, source: str = "192.0.2.10"
) -> str:
    """Sign in expecting a refusal, committed as the web form must (the counts are kept)."""
    with pytest.raises(SignInRefused) as refused:
        accounts.sign_in(db, username, password, now, source)
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
    assert (stored.disabled_at, stored.last_sign_in_at) == (None, None)
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

HERE = "192.0.2.10"  # the clinician's own computer
THERE = "198.51.100.7"  # somebody else's


def _throttles(db: Session) -> list[SignInThrottle]:
    db.expire_all()
    return list(db.scalars(select(SignInThrottle).order_by(SignInThrottle.account)))


def _count(db: Session, username: str, source: str = HERE) -> tuple[int, datetime | None] | None:
    """(failures, paused until) counted for `username` from `source`, None if nothing is."""
    key = accounts.account_key(username)
    for row in _throttles(db):
        if (row.account, row.source) == (key, source):
            return row.failures, row.blocked_until
    return None


def _fail_times(db: Session, username: str, times: int, source: str = HERE) -> None:
    for attempt in range(times):
        assert _refusal(db, username, f"wrong guess number {attempt}", NOW, source) == WRONG


def test_sign_in_succeeds_and_forgets_the_failures_from_there(db: Session, ng: Clinician) -> None:
    assert _refusal(db, "dr.ng", "wrong password, surely", NOW) == WRONG
    assert _refusal(db, "dr.ng", "wrong password, surely", NOW, THERE) == WRONG
    assert _count(db, "dr.ng") == (1, None)
    later = NOW + timedelta(minutes=1)
    assert accounts.sign_in(db, "  DR.NG", PASSWORD, later, HERE) is ng
    db.commit()
    assert _count(db, "dr.ng") is None
    assert _count(db, "dr.ng", THERE) == (1, None)  # another source's failures still count
    assert _stored(db, ng).last_sign_in_at == later


def test_every_refusal_says_the_same_words(db: Session, ng: Clinician) -> None:
    """Unknown name, wrong password, disabled account and a paused one: one message, so none
    tells which names exist (issue 17: the lockout message did)."""
    assert WRONG.startswith("wrong user name or password")
    unknown = _refusal(db, "dr.nobody", PASSWORD, NOW)
    wrong = _refusal(db, ng.username, "not the right password", NOW)
    _fail_times(db, "dr.ng", 9)
    paused = _refusal(db, ng.username, PASSWORD, NOW)  # the right password, while paused
    accounts.disable(db, _stored(db, ng), NOW)
    db.commit()
    disabled = _refusal(db, ng.username, PASSWORD, NOW, THERE)
    assert unknown == wrong == paused == disabled == WRONG


@pytest.mark.usefixtures("ng")
def test_every_refusal_costs_one_verification_with_current_parameters(
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
    _refusal(db, "dr.ng", "not the right password", NOW)
    assert len(verified) == 3
    assert verified[0] == verified[1] != verified[2]  # one fixed hash for no one
    _fail_times(db, "dr.ng", 10, THERE)
    verified.clear()
    _refusal(db, "dr.ng", PASSWORD, NOW, THERE)  # paused: the same work as any refusal
    assert len(verified) == 1
    assert all(h.startswith(CURRENT_PARAMETERS) for h in verified)  # as costly as a real one


def test_ten_failures_pause_that_name_from_that_source_only(db: Session, ng: Clinician) -> None:
    """Nobody can lock a clinician out from elsewhere (issue 17)."""
    _fail_times(db, "dr.ng", 9, THERE)
    assert _count(db, "dr.ng", THERE) == (9, None)
    assert _refusal(db, "dr.ng", "wrong guess number 10", NOW, THERE) == WRONG
    assert _count(db, "dr.ng", THERE) == (0, NOW + accounts.LOCKOUT)

    almost = NOW + timedelta(minutes=14, seconds=59)
    assert _refusal(db, "dr.ng", PASSWORD, almost, THERE) == WRONG  # the right password
    assert _refusal(db, "dr.ng", "another wrong guess", almost, THERE) == WRONG
    assert _count(db, "dr.ng", THERE) == (0, NOW + accounts.LOCKOUT)  # paused: not counted

    # meanwhile the clinician, at their own computer, signs in as ever
    assert accounts.sign_in(db, "dr.ng", PASSWORD, almost, HERE) is ng
    db.commit()
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW + accounts.LOCKOUT, THERE) is ng
    db.commit()
    assert _count(db, "dr.ng", THERE) is None


@pytest.mark.usefixtures("ng")
def test_unknown_names_are_counted_and_paused_alike(db: Session) -> None:
    _fail_times(db, "dr.nobody", 10)
    _fail_times(db, "dr.ng", 10)
    assert _count(db, "dr.nobody") == _count(db, "dr.ng") == (0, NOW + accounts.LOCKOUT)
    # the table holds a hash of the names typed, never the names
    for row in _throttles(db):
        assert "nobody" not in row.account
        assert row.account in {
            "*",
            accounts.account_key("dr.ng"),
            accounts.account_key("DR.NOBODY "),
        }


@pytest.mark.usefixtures("ng")
def test_after_a_pause_the_count_starts_again(db: Session) -> None:
    _fail_times(db, "dr.ng", 10)
    after = NOW + timedelta(minutes=16)
    assert _refusal(db, "dr.ng", "wrong once more", after) == WRONG
    assert _count(db, "dr.ng") == (1, None)


def test_failures_spread_beyond_the_window_count_again_from_one(db: Session, ng: Clinician) -> None:
    _fail_times(db, "dr.ng", 9)
    later = NOW + accounts.WINDOW + timedelta(seconds=1)
    assert _refusal(db, "dr.ng", "wrong, much later", later) == WRONG
    assert _count(db, "dr.ng") == (1, None)
    assert accounts.sign_in(db, "dr.ng", PASSWORD, later, HERE) is ng


def test_one_source_trying_many_names_is_paused_too(
    db: Session, ng: Clinician, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert accounts.MAX_SOURCE_FAILURES > accounts.MAX_FAILED_ATTEMPTS
    monkeypatch.setattr(accounts, "MAX_SOURCE_FAILURES", 6)  # the rule; fewer hashes to make
    for name in ("ann", "bob", "cy", "dee", "eve"):
        _refusal(db, name, "a guess at somebody's password", NOW, THERE)
    assert _count(db, "*", THERE) is None  # "*" is not a name's hash...
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW, THERE) is ng  # not paused yet
    db.commit()
    _refusal(db, "fay", "a guess at somebody's password", NOW, THERE)  # the sixth
    source_wide = [r for r in _throttles(db) if r.account == ANY_ACCOUNT]
    assert [(r.source, r.blocked_until) for r in source_wide] == [(THERE, NOW + accounts.LOCKOUT)]
    assert _refusal(db, "dr.ng", PASSWORD, NOW, THERE) == WRONG  # every name, from there
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW, HERE) is ng  # from elsewhere: fine


@pytest.mark.usefixtures("ng")
def test_failures_counted_meanwhile_by_another_request_are_not_lost(
    engine: Engine, db: Session
) -> None:
    _refusal(db, "dr.ng", "a first wrong guess", NOW)
    assert _count(db, "dr.ng") == (1, None)  # read before the other request's failure
    with session_factory(engine)() as other:
        _refusal(other, "dr.ng", "a wrong guess elsewhere", NOW)
    # counted in the database itself: the 1 read above is not what this request writes back
    with pytest.raises(SignInRefused):
        accounts.sign_in(db, "dr.ng", "a wrong guess here", NOW, HERE)
    db.commit()
    assert _count(db, "dr.ng") == (3, None)


@pytest.mark.usefixtures("ng")
@pytest.mark.parametrize("username", ["dr.ng\x00", "dr\udcffng", "x" * 10_000, "dr ng", ""])
def test_a_name_no_account_can_have_is_refused_like_any_other(db: Session, username: str) -> None:
    """A NUL or a lone surrogate never reaches the database (PostgreSQL refuses NUL in text)."""
    assert _refusal(db, username, PASSWORD, NOW) == WRONG
    assert _count(db, username) == (1, None)


def test_a_disabled_clinician_is_refused_with_the_generic_message(
    db: Session, ng: Clinician
) -> None:
    assert accounts.disable(db, ng, NOW)
    assert not accounts.disable(db, ng, NOW)  # already
    db.commit()
    assert _refusal(db, "dr.ng", PASSWORD, NOW) == WRONG
    assert accounts.enable(ng)
    assert not accounts.enable(ng)
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW, HERE) is ng


def test_unlock_lifts_the_pauses_from_every_source(db: Session, ng: Clinician) -> None:
    _fail_times(db, "dr.ng", 10, HERE)
    _fail_times(db, "dr.ng", 10, THERE)
    _fail_times(db, "lee", 10, THERE)
    assert [source for source, _ in accounts.paused_from(db, _stored(db, ng), NOW)] == [
        HERE,
        THERE,
    ]
    assert accounts.unlock(db, _stored(db, ng)) == 4  # its two counts, and its sources' two
    db.commit()
    assert accounts.paused_from(db, _stored(db, ng), NOW) == []
    assert _count(db, "lee", THERE) == (0, NOW + accounts.LOCKOUT)  # another name's pause stays
    assert accounts.sign_in(db, "dr.ng", PASSWORD, NOW + timedelta(minutes=1), THERE) is ng


@pytest.mark.usefixtures("ng")
def test_a_successful_sign_in_clears_away_counts_that_would_restart(db: Session) -> None:
    _refusal(db, "dr.nobody", "a wrong guess", NOW)
    _fail_times(db, "lee", 10, THERE)
    later = NOW + accounts.WINDOW + timedelta(seconds=1)
    accounts.sign_in(db, "dr.ng", PASSWORD, later, HERE)
    db.commit()
    # the stale count of dr.nobody went; lee's pause (until NOW + LOCKOUT) has ended too
    assert _throttles(db) == []


def test_an_outdated_hash_is_upgraded_at_sign_in(db: Session, ng: Clinician) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    ng.password_hash = weak.hash(PASSWORD)
    db.commit()
    assert accounts.verify_password(ng.password_hash, PASSWORD) == Verified(True, True)
    _refusal(db, "dr.ng", "a wrong password here", NOW)
    assert _stored(db, ng).password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")

    accounts.sign_in(db, "dr.ng", PASSWORD, NOW, HERE)
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
