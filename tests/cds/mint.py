"""Print a CDS client JWT signed as the CDS Hooks Sandbox signs its calls, with the Sandbox's
published test key (tests/fixtures/cds-hooks), for trying Eligo with authentication on:

    .venv-serve/bin/python -m tests.cds.mint http://localhost:8000/cds-services/eligo-patient-view

The argument is the exact URL the token will be sent to (its `aud`). The token is ES384 with the
Sandbox's kid, `iss` https://sandbox.cds-hooks.org, valid 5 minutes, with a fresh `jti`: Eligo
accepts each token once, so make one per call. `--jku` adds the `jku` header the Sandbox sends
(Eligo then fetches the Sandbox's JWK Set from the internet instead of using an inline one).

Only PyJWT and cryptography are imported (both runtime dependencies), so the serving environment
runs it without the test one. The key is public: anyone can sign with it, so trust it on your
machine only, never in a deployed configuration.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cds-hooks"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
LIFETIME_SECONDS = 300


def sandbox_claims(audience: str, now: int | None = None) -> dict[str, Any]:
    """The claims the Sandbox puts in a call's token: no `sub`, `aud` the URL called."""
    issued = int(time.time()) if now is None else now
    return {
        "iss": SANDBOX_ISSUER,
        "aud": audience,
        "exp": issued + LIFETIME_SECONDS,
        "iat": issued,
        "jti": str(uuid.uuid4()),
    }


def sandbox_token(audience: str, *, jku: bool = False) -> str:
    headers: dict[str, Any] = {"kid": SANDBOX_KID, "typ": "JWT"}
    if jku:
        headers["jku"] = SANDBOX_JKU
    key = (FIXTURES / "sandbox-ecprivkey.pem").read_bytes()
    return jwt.encode(sandbox_claims(audience), key, algorithm="ES384", headers=headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cds.mint",
        description="Print a CDS client JWT signed with the CDS Hooks Sandbox's public test key.",
    )
    parser.add_argument(
        "audience",
        help="the exact URL the token is sent to, e.g. "
        "http://localhost:8000/cds-services/eligo-patient-view",
    )
    parser.add_argument("--jku", action="store_true", help=f"add the header jku: {SANDBOX_JKU}")
    args = parser.parse_args(argv)
    print(sandbox_token(args.audience, jku=args.jku))


if __name__ == "__main__":
    main()
