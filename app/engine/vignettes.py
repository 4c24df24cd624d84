"""Clinical vignettes: patients written as YAML, with the status a clinician expects, run
against the rule sets like unit tests (`eligo rules test`, and pytest).

A vignette file (rules/tests/*.yaml) names a rule set and lists cases; each case gives the
features exactly as the API takes them and what it expects: the status, and where it matters
the deciding criteria (`reasons`), the `missing` features, the met `cautions` and the result of
named `criteria`. Lists are compared as sets and exactly: a vignette that says which criteria
exclude also says that no other one does.

Vignette files are validated the way rule files are (positions, stable codes, every problem at
once), because a typo in an expected criterion id would otherwise make a test that cannot fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.engine.derive import DERIVED, derive
from app.engine.diagnostics import Code, Diagnostic, Position
from app.engine.evaluate import Decision, Result, Status, decide, decisive
from app.engine.floor import applies, switched_on
from app.engine.inputs import FeatureValue, InvalidInput, normalise
from app.engine.load import validate_model
from app.engine.located_yaml import LocatedDocument, PathKey, display_path, load_located
from app.engine.model import Criterion, Floor, RuleBase, RuleSet, Scalar
from app.engine.unit_memo import recording


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectSpec(_Strict):
    status: Status
    reasons: list[str] | None = Field(
        default=None, description="Exactly the criteria that settled ineligible / not_indicated"
    )
    missing: list[str] | None = Field(
        default=None, description="Exactly the values to measure that would decide"
    )
    to_confirm: list[str] | None = Field(
        default=None, description="Exactly the clinician confirmations that would decide"
    )
    cautions: list[str] | None = Field(default=None, description="Exactly the cautions met")
    criteria: dict[str, Result] = Field(default_factory=dict)


class CaseSpec(_Strict):
    name: str = Field(min_length=1)
    note: str | None = None
    ruleset: str | None = Field(default=None, description="Overrides the file's rule set")
    features: dict[str, Any]
    expect: ExpectSpec


class VignetteFileSpec(_Strict):
    """The envelope; cases are validated one by one so that one bad case hides no other."""

    ruleset: str | None = None
    cases: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Vignette:
    name: str
    position: Position
    ruleset: RuleSet
    values: dict[str, FeatureValue]
    expect: ExpectSpec

    @property
    def label(self) -> str:
        return f"{self.position.file}:{self.position.line} {self.ruleset.id}: {self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    vignette: Vignette
    decision: Decision
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass
class _Loader:
    rules: RuleBase
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: Code, message: str, doc: LocatedDocument, path: PathKey) -> None:
        self.diagnostics.append(Diagnostic(code, message, doc.position(path)))

    def file(self, path: Path, display: str) -> list[Vignette]:
        doc, diagnostics = load_located(path, display)
        self.diagnostics.extend(diagnostics)
        if diagnostics:
            return []
        spec = validate_model(VignetteFileSpec, doc.data, doc, self.diagnostics)
        if spec is None:
            return []
        vignettes: list[Vignette] = []
        names: set[str] = set()
        for i, raw in enumerate(spec.cases):
            case = validate_model(CaseSpec, raw, doc, self.diagnostics, ("cases", i))
            if case is None:
                continue
            if case.name in names:
                self.error(
                    Code.DUPLICATE_ID,
                    f"duplicate case name {case.name!r}",
                    doc,
                    ("cases", i, "name"),
                )
            names.add(case.name)
            vignette = self.case(case, spec.ruleset, doc, ("cases", i))
            if vignette is not None:
                vignettes.append(vignette)
        return vignettes

    def case(
        self, case: CaseSpec, default: str | None, doc: LocatedDocument, path: PathKey
    ) -> Vignette | None:
        ruleset_id = case.ruleset or default
        ruleset = self.rules.rulesets.get(ruleset_id or "")
        if ruleset is None:
            where = (*path, "ruleset") if case.ruleset else ("ruleset",) if default else path
            known = ", ".join(sorted(self.rules.rulesets))
            self.error(
                Code.UNKNOWN_RULESET,
                f"unknown rule set {ruleset_id!r}; known: {known}"
                if ruleset_id
                else "no rule set: set `ruleset` on the file or on the case",
                doc,
                where,
            )
            return None
        before = len(self.diagnostics)
        values = self.values(case, doc, path)
        self.expectations(case.expect, ruleset, doc, (*path, "expect"))
        if values is None or len(self.diagnostics) > before:
            return None
        return Vignette(case.name, doc.position(path), ruleset, values, case.expect)

    def values(
        self, case: CaseSpec, doc: LocatedDocument, path: PathKey
    ) -> dict[str, FeatureValue] | None:
        try:
            return derive(normalise(case.features, self.rules.features), self.rules.features)
        except InvalidInput as exc:
            for issue in exc.issues:
                where = tuple(issue.field.split("."))  # features.<id>[.unit|.value]
                self.error(
                    Code.INVALID_INPUT, f"{issue.field}: {issue.message}", doc, (*path, *where)
                )
            return None

    def expectations(
        self, expect: ExpectSpec, ruleset: RuleSet, doc: LocatedDocument, path: PathKey
    ) -> None:
        deciding = {c.id for c in ruleset.deciding}
        cautions = {c.id for c in ruleset.cautions}
        checks: list[tuple[str, Iterable[str], set[str], str]] = [
            ("reasons", expect.reasons or [], deciding, "a deciding criterion"),
            ("cautions", expect.cautions or [], cautions, "a caution"),
            ("criteria", expect.criteria, deciding | cautions, "a criterion"),
        ]
        for key, ids, allowed, what in checks:
            for i, ident in enumerate(ids):
                if ident not in allowed:
                    where = (*path, key, ident) if key == "criteria" else (*path, key, i)
                    self.error(
                        Code.UNKNOWN_CRITERION,
                        f"{ident!r} is not {what} of {ruleset.id}",
                        doc,
                        where,
                    )
        for key in ("missing", "to_confirm"):
            for i, feature in enumerate(getattr(expect, key) or []):
                if feature not in self.rules.features:
                    self.error(
                        Code.UNKNOWN_FEATURE, f"unknown feature {feature!r}", doc, (*path, key, i)
                    )


def load_vignettes(tests_dir: Path, rules: RuleBase) -> tuple[list[Vignette], list[Diagnostic]]:
    """Every case of every tests_dir/*.yaml, validated against the loaded rules."""
    loader = _Loader(rules)
    vignettes: list[Vignette] = []
    with recording():  # their units are the rules' too: kept for the next process
        for path in sorted(tests_dir.glob("*.yaml")):
            vignettes += loader.file(path, display_path(path))
    return vignettes, loader.diagnostics


def run(vignette: Vignette) -> Outcome:
    decision = decide(vignette.ruleset, vignette.values)
    return Outcome(vignette, decision, tuple(_mismatches(vignette.expect, decision)))


def _mismatches(expect: ExpectSpec, decision: Decision) -> Iterable[str]:
    if decision.status is not expect.status:
        yield f"status: expected {expect.status.value}, got {decision.status.value}"
    got_sets = {
        "reasons": {r.criterion.id for r in decisive(decision)},
        "missing": set(decision.missing),
        "to_confirm": set(decision.to_confirm),
        "cautions": {r.criterion.id for r in decision.cautions if r.result is Result.MET},
    }
    for key, got in got_sets.items():
        expected: list[str] | None = getattr(expect, key)
        if expected is not None and set(expected) != got:
            yield f"{key}: expected {sorted(expected)}, got {sorted(got)}"
    results = {r.criterion.id: r.result for r in (*decision.criteria, *decision.cautions)}
    for ident, want in expect.criteria.items():
        if results[ident] is not want:
            yield f"criterion {ident}: expected {want.value}, got {results[ident].value}"


@dataclass(frozen=True, slots=True)
class FloorCase:
    """A vignette expected `eligible`, run again with one general contraindication of the
    safety floor switched on: it must come out `ineligible`. Generated for every such vignette
    and every contraindication of its therapy, so a future rule set cannot forget one."""

    vignette: Vignette
    floor: Floor
    feature: str
    value: Scalar
    decision: Decision

    @property
    def passed(self) -> bool:
        return self.decision.status is Status.INELIGIBLE

    @property
    def label(self) -> str:
        shown = str(self.value).lower() if isinstance(self.value, bool) else f"{self.value:g}"
        return f"{self.vignette.label} + {self.feature} = {shown} (safety floor {self.floor.id})"


def floor_cases(vignettes: Iterable[Vignette], rules: RuleBase) -> list[FloorCase]:
    """Every eligible vignette with each applicable contraindication switched on."""
    return [
        _floor_case(vignette, entry, feature, value, rules)
        for vignette in vignettes
        if vignette.expect.status is Status.ELIGIBLE
        for entry in rules.floor
        if applies(entry, vignette.ruleset)
        for feature, value in entry.witnesses
    ]


def _floor_case(
    vignette: Vignette, entry: Floor, feature: str, value: Scalar, rules: RuleBase
) -> FloorCase:
    given = {k: v for k, v in vignette.values.items() if v.provenance.source != DERIVED}
    given[feature] = switched_on(rules.features[feature], value)
    # Derived again: what the switch implies (active malignancy, so a history of one)
    # replaces a value the vignette gave against it, as for any patient.
    decision = decide(vignette.ruleset, derive(given, rules.features))
    return FloorCase(vignette, entry, feature, value, decision)


@dataclass(frozen=True, slots=True)
class CriterionCoverage:
    ruleset: RuleSet
    criterion: Criterion
    seen: frozenset[Result]

    @property
    def unexercised(self) -> list[Result]:
        return [r for r in Result if r not in self.seen]


def coverage(rules: RuleBase, outcomes: Iterable[Outcome]) -> list[CriterionCoverage]:
    """For every criterion of every rule set: which of met / not_met / unknown the vignettes
    drove it to. Only passing vignettes count: a failing one proves nothing about a branch."""
    seen: dict[tuple[str, str], set[Result]] = {}
    for outcome in outcomes:
        if not outcome.passed:
            continue
        decision = outcome.decision
        for result in (*decision.criteria, *decision.cautions):
            seen.setdefault((decision.ruleset.id, result.criterion.id), set()).add(result.result)
    return [
        CriterionCoverage(
            ruleset, criterion, frozenset(seen.get((ruleset.id, criterion.id), set()))
        )
        for ruleset in rules.rulesets.values()
        for criterion in (*ruleset.deciding, *ruleset.cautions)
    ]
