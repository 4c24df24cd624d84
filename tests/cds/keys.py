"""Keys and tokens for the CDS Hooks JWT tests.

The ES384 pair is the CDS Hooks Sandbox's public test key (tests/fixtures/cds-hooks, see its
README): anyone can sign with it, so it is trusted only here. Every other key is made at test
time. Tokens are signed for real; the ones PyJWT refuses to make (alg none, HS384 keyed with a
public key) are put together by hand, as an attacker would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

from tests.cds import mint
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "cds-hooks"
SANDBOX_KID = mint.SANDBOX_KID  # one source for these and for `python -m tests.cds.mint`
SANDBOX_ISSUER = mint.SANDBOX_ISSUER
AUDIENCE = "https://eligo.example/cds-services/eligo-cell-therapy"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def sandbox_jwks() -> dict[str, Any]:
    jwks: dict[str, Any] = json.loads((FIXTURES / "sandbox-jwks.json").read_text())
    return jwks


@cache
def sandbox_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (FIXTURES / "sandbox-ecprivkey.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def sandbox_public_pem() -> bytes:
    """The text an HS384 confusion attack uses as the HMAC secret: it is public."""
    return (
        sandbox_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP384R1())


def public_jwk(key: PrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    """The public half of `key` as a JWK, with `extra` members (alg, use, ...)."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    return {**jwk, "kid": kid, **extra}


def jwk_set(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def claims(*, drop: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
    """A CDS client's claims, valid now: `overrides` replace them, `drop` names ones to leave
    out."""
    now = int(time.time())
    payload = {
        "iss": SANDBOX_ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "tenant": "ward-7",
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if name not in drop}


def sign(
    payload: dict[str, Any],
    key: PrivateKey | None = None,
    *,
    alg: str = "ES384",
    kid: str | None = SANDBOX_KID,
    **headers: Any,
) -> str:
    """A compact JWT signed for real (by the sandbox key unless `key`); header members in
    `headers`, where None leaves one out."""
    header = {"kid": kid, "typ": "JWT", **headers}
    # PyJWT adds a typ unless given a None one; any other None member is left out here.
    header = {name: value for name, value in header.items() if value is not None or name == "typ"}
    with warnings.catch_warnings():
        # Short RSA keys are made on purpose, to be refused.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, key or sandbox_key(), algorithm=alg, headers=header)


def token(**overrides: Any) -> str:
    """A valid sandbox token with these claim overrides."""
    return sign(claims(**overrides))


def bearer(compact: str) -> str:
    return f"Bearer {compact}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token put together by hand: nothing checks what it claims."""
    parts = (json.dumps(header).encode(), json.dumps(payload).encode())
    return ".".join([*(b64url(part) for part in parts), b64url(signature)])


def hs384_token(payload: dict[str, Any], secret: bytes, kid: str = SANDBOX_KID) -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key, which a
    verifier that let the token choose its algorithm would use as the HMAC secret."""
    header = {"alg": "HS384", "typ": "JWT", "kid": kid}
    unsigned = raw_token(header, payload).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha384).digest()
    return f"{unsigned}.{b64url(mac)}"
