"""Settings: one class, environment variables with the `ELIGO_` prefix, secure defaults."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.cds.issuers import IssuerConfig, allowed_host

if TYPE_CHECKING:
    from app.batch.head import Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Published on purpose: pseudonyms made with it protect nothing, so production refuses it.
DEV_PSEUDONYM_KEY = "eligo-development-only-pseudonym-key"
MIN_KEY_LENGTH = 32
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SmartClient(BaseModel):
    """How Eligo is registered with one issuer's authorisation server: its client id (else
    ELIGO_SMART_CLIENT_ID) and, for a confidential client, its secret."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    client_secret: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELIGO_", extra="ignore")

    env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development (local, announced) or production (strict checks at start)",
    )
    rules_dir: Path = Field(
        default=PROJECT_ROOT / "rules",
        description="Directory with features.yaml, evidence.yaml and therapies/*.yaml",
    )
    migrations_dir: Path = Field(
        default=PROJECT_ROOT / "migrations",
        description="Alembic scripts (set in images where the package is installed elsewhere)",
    )
    rules_reload_interval: float = Field(
        default=2.0,
        ge=0,
        description="Seconds between checks of the rules directory for changed files; "
        "0 turns polling off (SIGHUP still reloads)",
    )
    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'data' / 'eligo.db'}",
        description="SQLAlchemy URL; the embedded default is a SQLite file",
    )
    host: str = Field(default="127.0.0.1", description="Bind address for `eligo serve`")
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Worker processes of `eligo serve` (`--workers`). Default: 1 in "
        "development; in production one per CPU this process may use, at most 4",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413"
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A JSON request body not received within this many seconds gets 408: a "
        "sender that stalls holds its connection and request no longer",
    )
    max_json_depth: int = Field(
        default=32,
        ge=4,
        le=200,
        description="JSON request bodies whose arrays and objects nest deeper get 422 "
        "(judged before parsing; a FHIR Bundle nests about 12 deep)",
    )
    max_json_items: int = Field(
        default=10_000,
        ge=16,
        description="A JSON array or object in a request body with more items (members) gets "
        "422, e.g. a FHIR Bundle with more entries",
    )
    max_problem_errors: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="An error answer lists at most this many field errors; "
        "`errors_omitted` counts the rest",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    auth: bool = Field(
        default=True,
        description="Require an API client's Bearer token; `off` only for local development "
        "bound to a loopback address",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC that pseudonymises patient identifiers before they are "
        f"stored; at least {MIN_KEY_LENGTH} characters, required in production",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser (JSON list, e.g. ["https://ehr.example"])',
    )

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The URL callers reach this service at (behind a proxy), without a "
        "trailing slash: the audience CDS Hooks JWTs must name and the base of card links. "
        "Required in production when CDS issuers are configured; in development, by default "
        "the URL of the request, if its Host is in ELIGO_CDS_ALLOWED_HOSTS",
    )
    cds_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Without ELIGO_PUBLIC_URL: the Host header values (a name or address, "
        "optionally with :port) a CDS Hooks call may arrive with. Its audience and card links "
        "are built from that Host, so a call with any other is refused (401)",
    )
    cds_issuers: dict[str, IssuerConfig] = Field(
        default_factory=dict,
        description="Trusted CDS Hooks clients by JWT `iss`, each with its keys (JSON, e.g. "
        '{"https://ehr.example": {"jwks_url": "https://ehr.example/.well-known/jwks.json"}}); '
        "with none, every CDS call is refused (unless authentication is off)",
    )
    cds_fhir_servers: list[str] = Field(
        default_factory=list,
        description="Base URLs (prefixes) of the FHIR servers the CDS service may fetch from "
        "when a prefetch is incomplete; any other fhirServer gets 412",
    )
    cds_cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Browser origins allowed to call /cds-services. Every call carries a JWT "
        "signed by a trusted issuer and no cookie is used, so `*` lets browser-based EHRs in "
        "without exposing anything to other sites",
    )
    fhir_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Per-request timeout when fetching from a FHIR server"
    )

    smart_issuers: dict[str, SmartClient] = Field(
        default_factory=dict,
        description="SMART App Launch: the EHR FHIR servers (`iss`) Eligo may be launched "
        "from, each optionally with its own registration (JSON, e.g. "
        '{"https://ehr.example/fhir": {"client_id": "eligo"}}, or a list of URLs that use '
        "ELIGO_SMART_CLIENT_ID; `client_secret` makes a confidential client). A launch naming "
        "any other `iss` is refused before anything is fetched; none: no SMART launch",
    )
    smart_client_id: str | None = Field(
        default=None,
        max_length=200,
        description="SMART App Launch: Eligo's client id at the EHRs' authorisation servers, "
        "for issuers in ELIGO_SMART_ISSUERS that do not name their own",
    )
    smart_scope: str | None = Field(
        default=None,
        max_length=2000,
        description="SMART App Launch: the scopes asked for. Default: `launch` and "
        "`patient/<type>.rs` for each resource type the FHIR mapping reads (Patient, "
        "Condition, Observation, the medication records and Medication)",
    )

    sign_in: Literal["local", "proxy"] = Field(
        default="local",
        description="How clinicians sign in to the web form when authentication is on: `local` "
        "accounts (`eligo users`, Argon2id password hashes) or `proxy`, a trusted reverse "
        "proxy's identity header (ELIGO_PROXY_USER_HEADER from ELIGO_TRUSTED_PROXIES only)",
    )
    proxy_user_header: str = Field(
        default="X-Forwarded-User",
        pattern=r"^[A-Za-z0-9-]+$",
        description="`proxy` sign-in: the header carrying the signed-in clinician's user name",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="`proxy` sign-in: addresses or networks (CIDR) of the proxies whose identity "
        "header is believed; the header from anyone else is refused. `local` sign-in: the "
        "proxies whose X-Forwarded-For names the address failed sign-ins are counted by",
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="A web session ends after this long unused"
    )
    session_max_hours: int = Field(
        default=12, ge=1, le=7 * 24, description="A web session ends this long after sign-in"
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark cookies Secure (https only, `__Host-` names). Default: always in "
        "production; in development only for requests that arrived over https",
    )

    screening_dir: Path | None = Field(
        default=None,
        description="Where registry screening jobs keep their files (uploads, results), one "
        "folder per job. Every process serving the same database must see the same folder. "
        "Default: `screenings/` beside the SQLite database, or in the working directory",
    )
    screening_sources: list[Path] = Field(
        default_factory=list,
        description="Server directories a screening request may name files or FHIR Bulk "
        'folders in by path (JSON list, e.g. ["/srv/registry"]); none by default',
    )
    screening_url_prefixes: list[str] = Field(
        default_factory=list,
        description="Databases a screening request may read a table from: SQLAlchemy URLs; a "
        "request's URL must name the same server, port, database (and user, if given here). "
        "A password given here is used when the request leaves it out. None by default",
    )
    screening_max_upload_bytes: int = Field(
        default=2 * 1024**3, ge=1024, description="Larger registry uploads get 413"
    )
    screening_workers: int = Field(
        default=1,
        ge=0,
        le=32,
        description="Screening jobs this process runs at a time; 0 runs none (an API-only "
        "process: another one sharing the database and folder runs them)",
    )
    screening_stale_seconds: float = Field(
        default=60,
        ge=3,
        description="A running screening whose heartbeat (every second) is older than this "
        "is taken to have crashed and is started again",
    )
    screening_max_columns: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="Most columns a screening source may have (a CSV header, the keys of "
        "NDJSON lines, a Parquet schema, a table); a wider one is refused, naming the file "
        "and the count, before it is read",
    )
    screening_max_header_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Longest first line (the header) of a CSV or NDJSON screening source; a "
        "longer one is refused without reading further",
    )
    screening_preflight_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="How much of a screening source the request's check reads: the first "
        "lines of a CSV or NDJSON file, a Parquet file's metadata (a larger one is refused); "
        "the job reads the rest",
    )
    screening_record_retry_seconds: float = Field(
        default=10,
        ge=0,
        le=300,
        description="A screening's outcome the database cannot take (unreachable, locked) is "
        "written again, with backoff, for this long (at most half the stale timeout) before "
        "it is given up",
    )

    screening_web_clients: dict[str, str] = Field(
        default_factory=dict,
        description="Form users who may screen registries from the web, each acting as an API "
        'client: {"dr.ng": "<client id>"}. The client must hold the `screen` scope; the user '
        "sees and submits that client's jobs (users given one client share them). With "
        "authentication off, everyone may",
    )

    @field_validator("screening_web_clients")
    @classmethod
    def _web_clients(cls, value: dict[str, str]) -> dict[str, str]:
        """User names as sign-in keeps them (stripped, casefolded), so "Dr.Ng" finds dr.ng."""
        return {name.strip().casefold(): client.strip() for name, client in value.items()}

    @field_validator("cds_allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            allowed_host(entry)  # ValueError names the bad entry
        return value

    @field_validator("smart_issuers", mode="before")
    @classmethod
    def _smart_issuers(cls, value: object) -> object:
        """A list of URLs is the short form: each uses ELIGO_SMART_CLIENT_ID."""
        issuers = {url: {} for url in value} if isinstance(value, list) else value
        for url in issuers if isinstance(issuers, dict) else ():
            if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", str(url)):
                raise ValueError(f"SMART issuer {str(url)[:100]!r} is not an http(s) URL")
        return issuers

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    def pseudonym_secret(self) -> bytes:
        """The HMAC key; development without one uses a published key (never in production)."""
        key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else DEV_PSEUDONYM_KEY
        return key.encode()

    def screening_folder(self) -> Path:
        """ELIGO_SCREENING_DIR, else beside the SQLite database (so a quick start keeps its
        data in one place), else `screenings/` in the working directory."""
        if self.screening_dir is not None:
            return self.screening_dir.resolve()
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - 0.3 s of every CLI start

        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in {None, "", ":memory:"}:
            return Path(str(url.database)).resolve().parent / "screenings"
        return Path.cwd() / "screenings"

    def screening_limits(self) -> Limits:
        """A source's header limits for app/batch, which reads no settings itself."""
        from app.batch.head import Limits  # noqa: PLC0415  # PyArrow, for screening only

        return Limits.of(
            self.screening_max_columns,
            self.screening_max_header_bytes,
            self.screening_preflight_bytes,
        )

    def _smart_refusals(self) -> list[str]:
        problems = [
            f"SMART issuer {url} has no client id (give one, or set ELIGO_SMART_CLIENT_ID)"
            for url, client in self.smart_issuers.items()
            if not (client.client_id or self.smart_client_id)
        ]
        if self.env is Environment.PRODUCTION and self.smart_issuers:
            if not self.public_url:
                problems.append(
                    "SMART issuers are configured (ELIGO_SMART_ISSUERS) but ELIGO_PUBLIC_URL "
                    "is unset: the launch's redirect_uri is built on it"
                )
            problems += [
                f"SMART issuer {url} is not https: its tokens would cross the network in clear"
                for url in self.smart_issuers
                if not url.startswith("https://")
            ]
        return problems

    def refusals(self, host: str) -> list[str]:
        """Why this configuration must not serve (empty: it may)."""
        problems = []
        if not self.auth and self.env is Environment.PRODUCTION:
            problems.append("authentication is off (ELIGO_AUTH) in production")
        if not self.auth and host not in LOOPBACK:
            problems.append(
                "authentication is off, so the service may only bind to a loopback address, "
                f"not {host!r}"
            )
        if self.auth and self.sign_in == "proxy" and not self.trusted_proxies:
            problems.append("proxy sign-in needs ELIGO_TRUSTED_PROXIES (the proxies to believe)")
        if self.env is Environment.PRODUCTION and self.cds_issuers and not self.public_url:
            problems.append(
                "CDS Hooks issuers are configured (ELIGO_CDS_ISSUERS) but ELIGO_PUBLIC_URL is "
                "unset: set it to the URL EHRs call this service at (e.g. "
                "https://eligo.example.org), the audience their JWTs must name"
            )
        problems += self._smart_refusals()
        if self.env is Environment.PRODUCTION and self.cookie_secure is False:
            problems.append("cookies must be Secure in production (ELIGO_COOKIE_SECURE)")
        if self.env is Environment.PRODUCTION:
            key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else None
            if key is None or key == DEV_PSEUDONYM_KEY:
                problems.append("ELIGO_PSEUDONYM_KEY is unset or the published development key")
            elif len(key) < MIN_KEY_LENGTH:
                problems.append(f"ELIGO_PSEUDONYM_KEY is shorter than {MIN_KEY_LENGTH} characters")
        return problems
