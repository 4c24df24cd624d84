"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import errors, evaluations, health, rulesets
from app.api.body import BodySizeLimit
from app.engine.load import load_rules
from app.reload import RuleReloader, fingerprint
from app.settings import Settings

log = logging.getLogger("eligo")

DESCRIPTION = """
Therapy-eligibility decision support for autologous HSCT, MSC and CD19 CAR-T in systemic
sclerosis and SLE. Each answer is per rule set (one therapy, indication and protocol), with
every criterion's result, the values and thresholds behind it, documented risks and citations.

**Decision support only.** The shipped rule sets are drafts that need local clinical review.
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Hot reload of the rules (file changes, SIGHUP) for as long as the app serves."""
    reloader: RuleReloader = app.state.reloader
    async with reloader.running():
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; raises RuleLoadError (with every diagnostic) if the rules are invalid."""
    settings = settings or Settings()
    # Fingerprint before loading: an edit landing during the load is then seen as a change.
    seen = fingerprint(settings.rules_dir)
    rules = load_rules(settings.rules_dir)
    app = FastAPI(title="Eligo", version=__version__, description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.rules = rules
    app.state.reloader = RuleReloader(
        app.state, settings.rules_dir, settings.rules_reload_interval, seen
    )
    errors.install(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    for module in (evaluations, rulesets, health):
        app.include_router(module.router)
    log.info(
        "loaded %d rule sets (%s) from %s", len(rules.rulesets), rules.hash[:19], settings.rules_dir
    )
    return app
