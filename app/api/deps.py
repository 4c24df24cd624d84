"""Request dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from app.engine.model import RuleBase
from app.settings import Settings


def get_rules(request: Request) -> RuleBase:
    """The rule base serving this request.

    Read once per request so that a reload swapping `app.state.rules` (a single reference
    assignment) never mixes two rule versions within one answer.
    """
    rules: RuleBase = request.app.state.rules
    return rules


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
