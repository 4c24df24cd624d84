"""What the screening pages say, from the rule sets and the API's job view (app/web/screening)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.engine.model import RuleBase
from app.errors import FieldError
from app.services.screenings import ScreeningJob
from app.web import screening


def _job(state: str, done: int, total: int | None, percent: float | None) -> ScreeningJob:
    job: dict[str, Any] = {
        "id": "j",
        "state": state,
        "created_at": datetime.now(UTC),
        "request": {"source": {"kind": "upload", "name": "registry.csv"}},
        "progress": {"rows_done": done, "rows_total": total, "percent": percent},
        "summary": None,
    }
    return job  # type: ignore[return-value]  # only the keys the page reads


def test_rule_sets_are_grouped_by_disease_then_therapy(shipped_rules: RuleBase) -> None:
    groups = screening.groups(shipped_rules.rulesets.values())
    indications = [g.id.rsplit("-", 1)[1] for g in groups]
    assert indications == sorted(indications, key=["ssc", "sle"].index)  # SSc first, then SLE
    chosen = [c.id for g in groups for c in g.choices]
    assert sorted(chosen) == sorted(shipped_rules.rulesets)
    hsct_ssc = next(g for g in groups if g.id == "hsct-ssc")
    assert hsct_ssc.title == "Autologous HSCT for SSc"
    assert {c.name for c in hsct_ssc.choices} >= {"ASTIS", "SCOT"}


def test_every_rule_set_ticked_means_all_including_those_added_later() -> None:
    known = ["a", "b", "c"]
    assert screening.chosen(["c", "a", "b"], known) is None
    assert screening.chosen(["b", " a", "b"], known) == ["b", "a"]
    assert screening.chosen([], known) == []


def test_the_apis_problems_are_put_next_to_the_form_fields() -> None:
    errors = [
        FieldError("source.path", "source_refused", "not allowed"),
        FieldError("rulesets[1]", "unknown_ruleset", "no such rule set"),
        FieldError("mapping.columns", "too_many_columns", "too many"),
        FieldError("mapping", "invalid_mapping", "mapping.yaml:3: unknown feature"),
        FieldError("engine", "unknown_engine", "use duckdb"),
    ]
    assert screening.field_errors(errors) == {
        "path": ["not allowed"],
        "rulesets": ["no such rule set"],
        "mapping": ["too many", "mapping.yaml:3: unknown feature"],
        "form": ["use duckdb"],
    }


def test_progress_in_words() -> None:
    assert screening.progress(_job("queued", 0, None, None)).text == "Waiting for a worker"
    assert screening.progress(_job("running", 0, None, None)).text == "Reading the source"
    assert screening.progress(_job("running", 1200, None, None)).text == "1,200 rows"
    running = screening.progress(_job("running", 1200, 5000, 24.0))
    assert running.text == "1,200 of 5,000 rows (24 %)"
    assert running.percent == 24.0
    assert screening.source_words(_job("running", 0, None, None)) == "registry.csv"
