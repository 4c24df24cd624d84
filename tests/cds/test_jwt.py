"""CDS Hooks client JWTs (app.cds.jwt): real keys, real signatures, and JWK Sets served over
loopback HTTP by a server that counts its requests. Every refusal must be `Unauthorized` with
its reason, never another exception."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from app.cds.issuers import IssuerConfig
from app.cds.jwt import ClientTokenVerifier, MemoryReplayGuard, VerifiedClient
from app.errors import Unauthorized
from tests.cds.keys import (
    AUDIENCE,
    SANDBOX_ISSUER,
    SANDBOX_KID,
    b64url,
    bearer,
    claims,
    ec_key,
    hs384_token,
    jwk_set,
    public_jwk,
    raw_token,
    rsa_key,
    sandbox_jwks,
    sandbox_key,
    sandbox_public_pem,
    sign,
    token,
)
from tests.conftest import ROOT

URL_ISSUER = "https://ehr.example/published"  # keys at a jwks_url
JKU_ISSUER = "https://ehr.example/jku"  # keys at an allow-listed jku
RSA_ISSUER = "https://ehr.example/rsa"
RSA_KID = "rsa-2048"


class JwksServer:
    """JWK Sets on 127.0.0.1 by path; counts requests per path; can answer an error status
    or be shut down."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[int, bytes]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval: shutdown() waits for it, at every test's teardown.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._running = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def serve(self, path: str, document: object, status: int = 200) -> None:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.documents[path] = (status, body)

    def fail(self, path: str, status: int = 500) -> None:
        self.serve(path, b"upstream trouble", status)

    def total(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits[self.path] += 1
                status, body = server.documents.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet tests

        return Handler


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    server.serve("/jwks.json", sandbox_jwks())
    server.serve("/jku.json", sandbox_jwks())
    server.serve("/elsewhere.json", sandbox_jwks())
    yield server
    server.stop()


def rsa_jwks() -> dict[str, Any]:
    return jwk_set(public_jwk(rsa_key(), RSA_KID, alg="RS384", use="sig"))


def issuers(server: JwksServer | None = None) -> dict[str, IssuerConfig]:
    configured = {
        SANDBOX_ISSUER: IssuerConfig(jwks=sandbox_jwks()),
        RSA_ISSUER: IssuerConfig(jwks=rsa_jwks()),
    }
    if server is not None:
        configured[URL_ISSUER] = IssuerConfig(jwks_url=server.url("/jwks.json"))
        configured[JKU_ISSUER] = IssuerConfig(jku=[server.url("/jku.json")])
    return configured


MakeVerifier = Callable[..., ClientTokenVerifier]


@pytest.fixture
def make_verifier() -> Iterator[MakeVerifier]:
    """Verifiers that are closed after the test; keyword arguments go to the verifier."""
    made: list[ClientTokenVerifier] = []

    def make(
        configured: dict[str, IssuerConfig] | None = None, **options: Any
    ) -> ClientTokenVerifier:
        options.setdefault("replay", MemoryReplayGuard())
        verifier = ClientTokenVerifier(configured or issuers(), **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> ClientTokenVerifier:
    return make_verifier()


@pytest.fixture
def served(make_verifier: MakeVerifier, jwks_server: JwksServer) -> ClientTokenVerifier:
    """A verifier that knows the issuers whose keys the loopback server publishes."""
    return make_verifier(issuers(jwks_server))


def refused(
    verifier: ClientTokenVerifier,
    authorization: str | None,
    audience: str = AUDIENCE,
    now: datetime | None = None,
) -> str:
    """The reason `verifier` refuses; fails unless the refusal is exactly Unauthorized."""
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(authorization, audience, now)
    error = caught.value
    assert type(error) is Unauthorized
    assert error.status == 401
    assert error.headers is not None
    challenge = error.headers["WWW-Authenticate"]
    # The reason sits in a quoted-string: no quote or backslash of its own may break it.
    assert '"' not in error.detail
    assert "\\" not in error.detail
    assert challenge.count('"') in (2, 6)
    return error.detail


# --- accepted --------------------------------------------------------------------------------


def test_valid_es384_token_with_inline_jwks(verifier: ClientTokenVerifier) -> None:
    payload = claims()
    client = verifier.verify(bearer(sign(payload)), AUDIENCE)
    assert client == VerifiedClient(
        issuer=SANDBOX_ISSUER,
        jti=payload["jti"],
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        tenant="ward-7",
    )


def test_tenant_is_optional_and_sub_is_ignored(verifier: ClientTokenVerifier) -> None:
    # sub is not part of CDS Hooks: not even a malformed one matters.
    client = verifier.verify(bearer(sign(claims(drop=("tenant",), sub=42))), AUDIENCE)
    assert client.tenant is None


def test_bearer_scheme_is_case_insensitive(verifier: ClientTokenVerifier) -> None:
    assert verifier.verify(f"bearer  {token()} ", AUDIENCE).issuer == SANDBOX_ISSUER


def test_typ_may_be_absent(verifier: ClientTokenVerifier) -> None:
    assert verifier.verify(bearer(sign(claims(), typ=None)), AUDIENCE).issuer == SANDBOX_ISSUER


def test_valid_via_jwks_url_then_cached(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    for _ in range(2):
        client = served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
        assert client.issuer == URL_ISSUER
    assert jwks_server.hits["/jwks.json"] == 1  # the second call used the cache
    assert jwks_server.total() == 1


def test_jwks_fetched_again_once_its_ttl_has_passed(
    make_verifier: MakeVerifier, jwks_server: JwksServer
) -> None:
    verifier = make_verifier(issuers(jwks_server), jwks_ttl_seconds=0.2)
    verifier.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    verifier.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    assert jwks_server.hits["/jwks.json"] == 1
    time.sleep(0.25)
    verifier.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    assert jwks_server.hits["/jwks.json"] == 2


def test_valid_rs384_token(verifier: ClientTokenVerifier) -> None:
    compact = sign(claims(iss=RSA_ISSUER), rsa_key(), alg="RS384", kid=RSA_KID)
    assert verifier.verify(bearer(compact), AUDIENCE).issuer == RSA_ISSUER


def test_valid_via_allow_listed_jku(served: ClientTokenVerifier, jwks_server: JwksServer) -> None:
    compact = sign(claims(iss=JKU_ISSUER), jku=jwks_server.url("/jku.json"))
    assert served.verify(bearer(compact), AUDIENCE).issuer == JKU_ISSUER
    assert jwks_server.hits == Counter({"/jku.json": 1})


def test_aud_list_containing_the_url_called(verifier: ClientTokenVerifier) -> None:
    compact = token(aud=["https://other.example/cds-services/x", AUDIENCE])
    assert verifier.verify(bearer(compact), AUDIENCE).issuer == SANDBOX_ISSUER


def test_times_within_the_leeway_are_accepted(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    verifier.verify(bearer(token(exp=now - 50, iat=now - 200)), AUDIENCE)
    verifier.verify(bearer(token(iat=now + 50, exp=now + 300)), AUDIENCE)


def test_lifetime_of_exactly_the_maximum_is_accepted(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    verifier.verify(bearer(token(iat=now, exp=now + 3600)), AUDIENCE)


# --- the Authorization header and the token's form ----------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_no_credential_gets_a_challenge_without_error_code(
    verifier: ClientTokenVerifier, authorization: str | None
) -> None:
    assert refused(verifier, authorization) == "an Authorization: Bearer JWT is required"
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(authorization, AUDIENCE)
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="eligo"'}


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Token abc.def.ghi", "JWT x"])
def test_other_schemes_are_not_bearer(verifier: ClientTokenVerifier, authorization: str) -> None:
    assert refused(verifier, authorization) == "Authorization scheme is not Bearer"


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "garbage",
        "two.parts",
        "a.b.c.d",
        ".e30.sig",
        "eyJhbGciOiJFUzM4NCJ9..sig",
        "eyJ!.e30.sig",
        "eyJhbGciOiJFUzM4NCJ9.e30.si+g/",
        "a b.c.d",
    ],
)
def test_not_a_jwt(verifier: ClientTokenVerifier, credential: str) -> None:
    assert refused(verifier, f"Bearer {credential}") == "not a JWT: expected three base64url parts"


@pytest.mark.parametrize(
    ("header", "payload", "reason"),
    [
        (b64url(b"not json"), b64url(b"{}"), "JWT header is not a base64url JSON object"),
        (b64url(b"[1, 2]"), b64url(b"{}"), "JWT header is not a base64url JSON object"),
        ("A", b64url(b"{}"), "JWT header is not a base64url JSON object"),
        (
            b64url(b'{"alg": "ES384"}'),
            b64url(b"null"),
            "JWT payload is not a base64url JSON object",
        ),
        (
            b64url(b'{"alg": "ES384"}'),
            b64url(b"\xff\xfe"),
            "JWT payload is not a base64url JSON object",
        ),
    ],
)
def test_header_or_payload_not_json(
    verifier: ClientTokenVerifier, header: str, payload: str, reason: str
) -> None:
    assert refused(verifier, f"Bearer {header}.{payload}.c2ln") == reason


def test_token_too_long(verifier: ClientTokenVerifier) -> None:
    compact = token(padding="x" * 20_000)
    assert refused(verifier, bearer(compact)) == "token longer than 16384 characters"


# --- algorithm and header ------------------------------------------------------------------


def test_alg_none_refused(verifier: ClientTokenVerifier) -> None:
    compact = raw_token({"alg": "none", "typ": "JWT", "kid": SANDBOX_KID}, claims())
    assert compact.endswith(".")
    assert refused(verifier, bearer(compact)) == "alg none not allowed: only ES384 or RS384"


@pytest.mark.parametrize(
    "secret", [sandbox_public_pem(), json.dumps(sandbox_jwks()).encode()], ids=["pem", "jwks"]
)
def test_hs384_keyed_with_the_public_key_refused(
    verifier: ClientTokenVerifier, secret: bytes
) -> None:
    compact = hs384_token(claims(), secret)
    assert refused(verifier, bearer(compact)) == "alg HS384 not allowed: only ES384 or RS384"


@pytest.mark.parametrize(
    "alg", ["HS256", "HS512", "ES256", "ES512", "RS256", "PS384", "EdDSA", "es384", "None"]
)
def test_other_algorithms_refused_by_name(verifier: ClientTokenVerifier, alg: str) -> None:
    compact = raw_token({"alg": alg, "kid": SANDBOX_KID}, claims(), b"signature")
    assert refused(verifier, bearer(compact)) == f"alg {alg} not allowed: only ES384 or RS384"


def test_alg_missing_or_not_a_string(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(raw_token({"kid": SANDBOX_KID}, claims()))) == (
        "alg header missing"
    )
    compact = raw_token({"alg": ["ES384"], "kid": SANDBOX_KID}, claims(), b"s")
    # Token-supplied text is shown with its quotes replaced (RFC 6750 error_description).
    assert refused(verifier, bearer(compact)) == "alg [?ES384?] not allowed: only ES384 or RS384"


def test_typ_other_than_jwt_refused(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(sign(claims(), typ="at+jwt"))) == (
        "typ at+jwt not allowed: must be JWT"
    )


def test_crit_header_refused(verifier: ClientTokenVerifier) -> None:
    compact = sign(claims(), crit=["exp"], exp=1)
    assert refused(verifier, bearer(compact)) == "crit header not supported"


# --- issuer and key selection ----------------------------------------------------------------


def test_unknown_issuer(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(token(iss="https://evil.example"))) == (
        "issuer https://evil.example not trusted: not in ELIGO_CDS_ISSUERS"
    )


def test_missing_issuer(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(sign(claims(drop=("iss",))))) == "iss claim missing"


def test_issuer_text_cannot_break_the_challenge(verifier: ClientTokenVerifier) -> None:
    reason = refused(verifier, bearer(token(iss='x", error="none\\\r\n')))
    assert reason.startswith("issuer x?, error=?none")


def test_kid_missing(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(sign(claims(), kid=None))) == "kid header missing"


def test_unknown_kid_in_inline_jwks(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(sign(claims(), kid="rotated-away"))) == (
        f"no key with kid rotated-away in the JWK Set of {SANDBOX_ISSUER}"
    )


def jku_refusal(jku: object, issuer: str) -> str:
    """The reason a jku not listed for `issuer` is refused: it names the jku and the setting."""
    # A quote cannot go into the WWW-Authenticate challenge: the reason shows "?" instead.
    shown = jku if isinstance(jku, str) else json.dumps(jku).replace('"', "?")
    return f"jku {shown} not allowed: not in the jku list of {issuer} in ELIGO_CDS_ISSUERS"


def test_jku_not_allow_listed_is_never_contacted(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    for issuer in (JKU_ISSUER, URL_ISSUER, SANDBOX_ISSUER):
        elsewhere = jwks_server.url("/elsewhere.json")
        compact = sign(claims(iss=issuer), jku=elsewhere)
        assert refused(served, bearer(compact)) == jku_refusal(elsewhere, issuer)
    # Not even a near miss or a list holding the allowed URL.
    for jku in (jwks_server.url("/jku.json/"), [jwks_server.url("/jku.json")]):
        compact = sign(claims(iss=JKU_ISSUER), jku=jku)
        assert refused(served, bearer(compact)) == jku_refusal(jku, JKU_ISSUER)
    assert jwks_server.total() == 0


def test_jku_of_another_issuer_not_allowed(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    compact = sign(claims(iss=URL_ISSUER), jku=jwks_server.url("/jku.json"))
    assert refused(served, bearer(compact)) == jku_refusal(jwks_server.url("/jku.json"), URL_ISSUER)
    assert jwks_server.total() == 0


def test_jku_only_issuer_needs_a_jku_header(served: ClientTokenVerifier) -> None:
    assert refused(served, bearer(token(iss=JKU_ISSUER))) == (
        f"jku header missing: {JKU_ISSUER} publishes its keys only at jku URLs"
    )


def test_unknown_kid_triggers_one_refetch_then_401(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    assert jwks_server.hits["/jwks.json"] == 1
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        assert refused(served, bearer(sign(claims(iss=URL_ISSUER), kid=kid))) == (
            f"no key with kid {kid} in the JWK Set of {URL_ISSUER}"
        )
    # One refetch for the first unknown kid; the flood after it waits its 30 s.
    assert jwks_server.hits["/jwks.json"] == 2


def test_unknown_kid_on_a_cold_cache_is_not_fetched_twice(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    assert refused(served, bearer(sign(claims(iss=URL_ISSUER), kid="made-up"))).startswith(
        "no key with kid made-up"
    )
    assert jwks_server.hits["/jwks.json"] == 1


def test_rotated_key_found_by_refetch(served: ClientTokenVerifier, jwks_server: JwksServer) -> None:
    served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    new_key = ec_key()
    jwks_server.serve(
        "/jwks.json", jwk_set(*sandbox_jwks()["keys"], public_jwk(new_key, "2026-11", alg="ES384"))
    )
    compact = sign(claims(iss=URL_ISSUER), new_key, kid="2026-11")
    assert served.verify(bearer(compact), AUDIENCE).issuer == URL_ISSUER
    assert jwks_server.hits["/jwks.json"] == 2


def test_jwks_server_error_is_retried_twice_then_401(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    jwks_server.fail("/jwks.json", 503)
    assert refused(served, bearer(token(iss=URL_ISSUER))) == f"JWK Set of {URL_ISSUER} unavailable"
    assert jwks_server.hits["/jwks.json"] == 3
    # A failure is not cached: once the issuer is back, so is its client.
    jwks_server.serve("/jwks.json", sandbox_jwks())
    assert served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE).issuer == URL_ISSUER


def test_jwks_server_down(served: ClientTokenVerifier, jwks_server: JwksServer) -> None:
    jwks_server.stop()
    assert refused(served, bearer(token(iss=URL_ISSUER))) == f"JWK Set of {URL_ISSUER} unavailable"


def test_jwks_server_down_after_a_failed_rotation_refetch_keeps_the_cached_keys(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE)
    jwks_server.stop()
    assert refused(served, bearer(sign(claims(iss=URL_ISSUER), kid="new"))).startswith(
        "no key with kid new"
    )
    assert served.verify(bearer(token(iss=URL_ISSUER)), AUDIENCE).issuer == URL_ISSUER


@pytest.mark.parametrize(
    ("status", "document"),
    [
        (404, {"error": "gone"}),
        (200, b"<html>"),
        (200, {"keys": "none"}),
        (200, [1]),
        (302, {}),
        (200, {**sandbox_jwks(), "padding": "x" * 300_000}),  # above the 256 KiB cap
    ],
    ids=["404", "html", "keys-not-list", "array", "redirect", "too-large"],
)
def test_jwks_answer_that_is_not_a_jwk_set(
    served: ClientTokenVerifier, jwks_server: JwksServer, status: int, document: object
) -> None:
    jwks_server.serve("/jwks.json", document, status)
    assert refused(served, bearer(token(iss=URL_ISSUER))) == f"JWK Set of {URL_ISSUER} unavailable"
    assert jwks_server.hits["/jwks.json"] == 1  # only a 5xx or a broken connection is retried


def test_concurrent_calls_on_a_cold_cache_fetch_once(
    served: ClientTokenVerifier, jwks_server: JwksServer
) -> None:
    tokens = [bearer(token(iss=URL_ISSUER)) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        clients = list(pool.map(lambda t: served.verify(t, AUDIENCE), tokens))
    assert {client.issuer for client in clients} == {URL_ISSUER}
    assert len({client.jti for client in clients}) == 16
    assert jwks_server.hits["/jwks.json"] == 1


# --- the key must fit the algorithm -----------------------------------------------------------


def _verifier_with_keys(make: MakeVerifier, *keys: dict[str, Any]) -> ClientTokenVerifier:
    return make({SANDBOX_ISSUER: IssuerConfig(jwks=jwk_set(*keys))})


def test_p256_key_for_es384_refused(make_verifier: MakeVerifier) -> None:
    key = ec_key(ec.SECP256R1())
    verifier = _verifier_with_keys(make_verifier, public_jwk(key, "p256"))
    compact = raw_token({"alg": "ES384", "kid": "p256"}, claims(), b"x" * 96)
    assert refused(verifier, bearer(compact)) == (
        "key p256 is not an EC P-384 key, which ES384 needs"
    )


def test_rsa_key_for_es384_and_ec_key_for_rs384_refused(make_verifier: MakeVerifier) -> None:
    rsa_jwk = public_jwk(rsa_key(), SANDBOX_KID)
    verifier = _verifier_with_keys(make_verifier, rsa_jwk)
    assert refused(verifier, bearer(token())) == (
        f"key {SANDBOX_KID} is not an EC P-384 key, which ES384 needs"
    )
    verifier = _verifier_with_keys(make_verifier, *sandbox_jwks()["keys"])
    compact = sign(claims(), rsa_key(), alg="RS384")
    assert refused(verifier, bearer(compact)) == (
        f"key {SANDBOX_KID} is not an RSA key, which RS384 needs"
    )


def test_same_kid_for_two_key_types_picks_the_fitting_one(make_verifier: MakeVerifier) -> None:
    both = (public_jwk(rsa_key(), SANDBOX_KID), *sandbox_jwks()["keys"])
    verifier = _verifier_with_keys(make_verifier, *both)
    assert verifier.verify(bearer(token()), AUDIENCE).issuer == SANDBOX_ISSUER
    compact = sign(claims(), rsa_key(), alg="RS384")
    assert verifier.verify(bearer(compact), AUDIENCE).issuer == SANDBOX_ISSUER


def test_rsa_key_shorter_than_2048_bits_refused(make_verifier: MakeVerifier) -> None:
    short = rsa_key(1024)
    verifier = _verifier_with_keys(make_verifier, public_jwk(short, "short"))
    compact = sign(claims(), short, alg="RS384", kid="short")
    assert refused(verifier, bearer(compact)) == "RSA key short is shorter than 2048 bits"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"use": "enc"}, "is not for verifying signatures"),
        ({"key_ops": ["encrypt"]}, "is not for verifying signatures"),
        ({"key_ops": "verify"}, "is not for verifying signatures"),
        ({"alg": "ES512"}, "is for ES512, not ES384"),
        ({"x": "AAAA"}, "is not a valid public key"),
    ],
)
def test_key_members_that_forbid_its_use(
    make_verifier: MakeVerifier, extra: dict[str, Any], reason: str
) -> None:
    jwk = {**sandbox_jwks()["keys"][0], **extra}
    verifier = _verifier_with_keys(make_verifier, jwk)
    assert refused(verifier, bearer(token())) == f"key {SANDBOX_KID} {reason}"


# --- signature -------------------------------------------------------------------------------


def test_forged_signature_same_kid_other_p384_key(verifier: ClientTokenVerifier) -> None:
    compact = sign(claims(), ec_key())
    assert refused(verifier, bearer(compact)) == "signature invalid"


def test_payload_changed_after_signing(verifier: ClientTokenVerifier) -> None:
    header, _, signature = token().split(".")
    tampered = raw_token({}, claims(tenant="ward-8")).split(".")[1]
    assert refused(verifier, bearer(f"{header}.{tampered}.{signature}")) == "signature invalid"


def test_alg_none_with_an_empty_signature_and_es384_header(verifier: ClientTokenVerifier) -> None:
    compact = raw_token({"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID}, claims())
    assert refused(verifier, bearer(compact)) == "signature invalid"


def test_forged_token_cannot_burn_a_jti(verifier: ClientTokenVerifier) -> None:
    payload = claims()
    assert refused(verifier, bearer(sign(payload, ec_key()))) == "signature invalid"
    assert refused(verifier, bearer(sign({**payload, "aud": "https://x.example"}))) == (
        f"aud does not match the URL called: expected {AUDIENCE}"
    )
    assert verifier.verify(bearer(sign(payload)), AUDIENCE).jti == payload["jti"]


# --- claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audience",
    [
        AUDIENCE + "/",
        AUDIENCE.upper(),
        "https://eligo.example/cds-services/other",
        "https://eligo.example/cds-services/eligo-cell-therapy/feedback",
    ],
)
def test_aud_must_equal_the_url_called_exactly(
    verifier: ClientTokenVerifier, audience: str
) -> None:
    # The reason names the URL called (what the token should have named), not the token's aud.
    assert refused(verifier, bearer(token()), audience) == (
        f"aud does not match the URL called: expected {audience}"
    )


def test_aud_list_without_the_url_called(verifier: ClientTokenVerifier) -> None:
    compact = token(aud=[AUDIENCE + "/", "https://other.example"])
    assert refused(verifier, bearer(compact)) == (
        f"aud does not match the URL called: expected {AUDIENCE}"
    )


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "aud"])
def test_required_claim_missing(verifier: ClientTokenVerifier, claim: str) -> None:
    assert refused(verifier, bearer(sign(claims(drop=(claim,))))) == f"{claim} claim missing"


def test_expired(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    assert refused(verifier, bearer(token(iat=now - 400, exp=now - 61))) == "token expired"


def test_expired_judged_at_the_given_now(verifier: ClientTokenVerifier) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert refused(verifier, bearer(token()), now=later) == "token expired"


def test_iat_in_the_future(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    compact = token(iat=now + 120, exp=now + 400)
    assert refused(verifier, bearer(compact)) == "iat is in the future"
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    assert refused(verifier, bearer(token()), now=earlier) == "iat is in the future"


def test_nbf_in_the_future(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    assert refused(verifier, bearer(token(nbf=now + 120))) == "token not valid yet (nbf)"


def test_lifetime_too_long(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    compact = token(iat=now, exp=now + 3601)
    assert refused(verifier, bearer(compact)) == "token lifetime above 3600 s"


def test_lifetime_limit_is_configurable(make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(max_lifetime_seconds=60, leeway_seconds=0)
    now = int(time.time())
    assert refused(verifier, bearer(token(iat=now, exp=now + 61))) == "token lifetime above 60 s"


def test_exp_before_iat(verifier: ClientTokenVerifier) -> None:
    now = int(time.time())
    assert refused(verifier, bearer(token(iat=now + 30, exp=now + 10))) == "exp is before iat"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "tomorrow"), ("exp", float("nan")), ("exp", True), ("iat", [1]), ("iat", None)],
)
def test_times_must_be_numeric_dates(
    verifier: ClientTokenVerifier, claim: str, value: object
) -> None:
    reason = refused(verifier, bearer(token(**{claim: value})))
    # PyJWT calls a null claim missing; the rest are not NumericDates.
    assert reason in (f"{claim} must be a NumericDate", f"{claim} claim missing")


@pytest.mark.parametrize("jti", ["", 17, ["a"]])
def test_jti_must_be_a_non_empty_string(verifier: ClientTokenVerifier, jti: object) -> None:
    assert refused(verifier, bearer(token(jti=jti))) == "jti must be a non-empty string"


def test_tenant_must_be_a_string(verifier: ClientTokenVerifier) -> None:
    assert refused(verifier, bearer(token(tenant={"id": 1}))) == "tenant must be a string"


# --- replay ----------------------------------------------------------------------------------


REPLAYED = "jti already used: sign a new token, with a new jti, for each call"


def test_replayed_jti_refused(served: ClientTokenVerifier) -> None:
    payload = claims()
    compact = bearer(sign(payload))
    served.verify(compact, AUDIENCE)
    assert refused(served, compact) == REPLAYED
    # Signed again with the same jti: still a replay.
    assert refused(served, bearer(sign({**payload, "iat": payload["iat"] - 1}))) == REPLAYED
    served.verify(bearer(sign({**payload, "jti": "another"})), AUDIENCE)
    same_jti_other_issuer = sign({**payload, "iss": URL_ISSUER})
    assert served.verify(bearer(same_jti_other_issuer), AUDIENCE).issuer == URL_ISSUER


def test_refused_token_does_not_use_up_its_jti(verifier: ClientTokenVerifier) -> None:
    payload = claims()
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert refused(verifier, bearer(sign(payload)), now=later) == "token expired"
    verifier.verify(bearer(sign(payload)), AUDIENCE)


def test_replay_guard_is_told_when_it_may_forget(make_verifier: MakeVerifier) -> None:
    seen: list[tuple[str, str, datetime]] = []

    class Recording:
        def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
            seen.append((issuer, jti, expires_at))
            return True

    verifier = make_verifier(replay=Recording(), leeway_seconds=30)
    payload = claims()
    verifier.verify(bearer(sign(payload)), AUDIENCE)
    expiry = datetime.fromtimestamp(payload["exp"], UTC) + timedelta(seconds=30)
    assert seen == [(SANDBOX_ISSUER, payload["jti"], expiry)]


def test_memory_replay_guard_forgets_expired_entries() -> None:
    clock = [datetime(2026, 11, 22, 12, 0, tzinfo=UTC)]
    guard = MemoryReplayGuard(clock=lambda: clock[0])
    soon, later = clock[0] + timedelta(seconds=10), clock[0] + timedelta(seconds=100)
    assert guard.first_use("iss", "a", soon)
    assert guard.first_use("iss", "b", later)
    assert not guard.first_use("iss", "a", soon)
    assert guard.first_use("other", "a", soon)
    assert len(guard) == 3
    clock[0] += timedelta(seconds=11)
    assert guard.first_use("iss", "c", later)  # any call forgets what has expired
    assert len(guard) == 2  # a and other/a gone, b and c kept
    assert guard.first_use("iss", "a", later)  # forgotten, so new again
    assert not guard.first_use("iss", "b", later)


def test_memory_replay_guard_admits_one_of_many_concurrent_uses() -> None:
    guard = MemoryReplayGuard()
    expires = datetime.now(UTC) + timedelta(minutes=5)
    barrier = threading.Barrier(16)

    def use(_: int) -> bool:
        barrier.wait()
        return guard.first_use("iss", "once", expires)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(use, range(16)))
    assert results.count(True) == 1


# --- configuration and packaging -------------------------------------------------------------


def test_issuer_config_needs_a_key_source() -> None:
    with pytest.raises(ValidationError, match="needs jwks, jwks_url or jku"):
        IssuerConfig()


@pytest.mark.parametrize(
    "config",
    [
        {"jwks": {"kty": "EC"}},
        {"jwks_url": "http://ehr.example/jwks.json"},
        {"jku": ["https://ehr.example/jwks.json", "ftp://ehr.example/jwks"]},
        {"jwks_url": "https://ehr.example/jwks.json", "issuer": "x"},
    ],
)
def test_issuer_config_refuses_unsafe_or_unknown(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IssuerConfig.model_validate(config)


def test_issuer_config_from_settings_json() -> None:
    config = IssuerConfig.model_validate_json(
        json.dumps({"jwks_url": "https://ehr.example/jwks.json", "jku": ["http://localhost/k"]})
    )
    assert config.jwks is None
    assert config.jku == ["http://localhost/k"]
    with pytest.raises(ValidationError):
        config.jwks_url = "https://evil.example/"  # type: ignore[misc]


def test_module_does_not_import_fastapi() -> None:
    code = "import sys, app.cds.jwt; print('fastapi' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_fixture_key_pair_matches_its_jwks() -> None:
    (jwk,) = sandbox_jwks()["keys"]
    assert public_jwk(sandbox_key(), SANDBOX_KID, use="sig", alg="ES384") == jwk
