"""Load a rules directory: parse, validate in named stages, compile.

    1. parse     YAML with positions; syntax errors and duplicate keys
    2. schema    the pydantic file models (schema.py)
    3. catalogue feature units, ranges, enums; duplicate feature and evidence ids
    4. compile   each rule set's expressions against the catalogue: features, types, units,
                 ranges; citations; duplicate ids; unverified evidence used as a threshold

Every stage collects diagnostics; a stage runs on whatever the previous one could validate,
so one run reports as much as it can. Any diagnostic at all fails the load: a rule set that
is half-right is not one a clinician should be shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.engine.compile import ExpressionCompiler, render
from app.engine.diagnostics import Code, Diagnostic, Position, RuleLoadError
from app.engine.located_yaml import LocatedDocument, PathKey, display_path, load_located
from app.engine.model import Criterion, CriterionKind, Feature, RuleBase, RuleSet, atoms
from app.engine.schema import (
    CriterionSpec,
    EvidenceFile,
    EvidenceSpec,
    EvidenceStatus,
    FeatureFile,
    FeatureSpec,
    FeatureType,
    RuleSetSpec,
)
from app.engine.units import UnitError, validate_unit

M = TypeVar("M", bound=BaseModel)


@dataclass
class _Context:
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: Code, message: str, doc: LocatedDocument, path: PathKey) -> None:
        self.diagnostics.append(Diagnostic(code, message, doc.position(path)))


def _parse(path: Path, ctx: _Context) -> LocatedDocument | None:
    if not path.is_file():
        ctx.diagnostics.append(
            Diagnostic(Code.FILE_MISSING, "required file is missing", _doc_position(path))
        )
        return None
    doc, diagnostics = load_located(path, display_path(path))
    ctx.diagnostics.extend(diagnostics)
    if any(d.code is Code.YAML_SYNTAX for d in diagnostics):
        return None  # nothing trustworthy to validate
    return doc


def _doc_position(path: Path) -> Position:
    return LocatedDocument(display_path(path), None).position(())


def validate_model(
    model: type[M],
    data: object,
    doc: LocatedDocument,
    diagnostics: list[Diagnostic],
    path: PathKey = (),
) -> M | None:
    """Validate `data` (found at `path` in `doc`) against a pydantic model; on failure append
    one E003 diagnostic per error, positioned at the offending value, and return None."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = (*path, *error["loc"])
            where = ".".join(str(part) for part in loc) or "document"
            diagnostics.append(
                Diagnostic(Code.SCHEMA, f"{where}: {error['msg']}", doc.position(loc))
            )
        return None


def _validate(doc: LocatedDocument, model: type[M], ctx: _Context) -> M | None:
    return validate_model(model, doc.data, doc, ctx.diagnostics)


def _check_feature(spec: FeatureSpec, doc: LocatedDocument, path: PathKey, ctx: _Context) -> None:
    if spec.type is FeatureType.NUMBER:
        if spec.unit is None or spec.range is None:
            ctx.error(
                Code.SCHEMA, f"number feature {spec.id!r} needs a unit and a range", doc, path
            )
        elif spec.range[0] > spec.range[1]:
            ctx.error(Code.EMPTY_RANGE, f"range {list(spec.range)} is empty", doc, (*path, "range"))
        for key, unit in [("unit", spec.unit), *(("other_units", u) for u in spec.other_units)]:
            if unit is None:
                continue
            try:
                validate_unit(unit)
            except UnitError as exc:
                ctx.error(Code.UNIT, str(exc), doc, (*path, key))
    elif spec.type is FeatureType.ENUM and not spec.values:
        ctx.error(Code.SCHEMA, f"enum feature {spec.id!r} needs its values", doc, path)
    elif spec.type is not FeatureType.ENUM and spec.values:
        ctx.error(Code.SCHEMA, f"only enum features have values ({spec.id!r})", doc, path)
    if spec.type is not FeatureType.NUMBER and (spec.unit or spec.range):
        ctx.error(
            Code.SCHEMA, f"only number features have a unit or range ({spec.id!r})", doc, path
        )


def _unique(
    ids: Iterator[tuple[str, PathKey]], what: str, doc: LocatedDocument, ctx: _Context
) -> None:
    seen: dict[str, PathKey] = {}
    for ident, path in ids:
        if ident in seen:
            first = doc.position(seen[ident])
            ctx.error(
                Code.DUPLICATE_ID, f"duplicate {what} id {ident!r} (first at {first})", doc, path
            )
        else:
            seen[ident] = path


def _catalogue(
    rules_dir: Path, ctx: _Context
) -> tuple[dict[str, Feature], dict[str, EvidenceSpec]]:
    features: dict[str, Feature] = {}
    evidence: dict[str, EvidenceSpec] = {}
    doc = _parse(rules_dir / "features.yaml", ctx)
    feature_file = _validate(doc, FeatureFile, ctx) if doc else None
    if doc and feature_file:
        _unique(
            ((f.id, ("features", i, "id")) for i, f in enumerate(feature_file.features)),
            "feature",
            doc,
            ctx,
        )
        for i, spec in enumerate(feature_file.features):
            _check_feature(spec, doc, ("features", i), ctx)
            features.setdefault(spec.id, Feature(spec))
    doc = _parse(rules_dir / "evidence.yaml", ctx)
    evidence_file = _validate(doc, EvidenceFile, ctx) if doc else None
    if doc and evidence_file:
        _unique(
            ((e.id, ("evidence", i, "id")) for i, e in enumerate(evidence_file.evidence)),
            "evidence",
            doc,
            ctx,
        )
        for citation in evidence_file.evidence:
            evidence.setdefault(citation.id, citation)
    return features, evidence


class _RuleSetCompiler:
    """Stage 4 for one rule set file."""

    def __init__(
        self,
        doc: LocatedDocument,
        spec: RuleSetSpec,
        features: dict[str, Feature],
        evidence: dict[str, EvidenceSpec],
        ctx: _Context,
    ) -> None:
        self.doc, self.spec, self.features, self.evidence, self.ctx = (
            doc,
            spec,
            features,
            evidence,
            ctx,
        )
        self.expressions = ExpressionCompiler(doc, features, ctx.diagnostics)

    def compile(self) -> RuleSet | None:
        before = len(self.ctx.diagnostics)
        spec = self.spec
        sections = [
            ("inclusions", CriterionKind.INCLUSION),
            ("exclusions", CriterionKind.EXCLUSION),
            ("cautions", CriterionKind.CAUTION),
        ]
        indication = self.criterion(
            spec.indication_criterion, ("indication_criterion",), CriterionKind.INDICATION
        )
        compiled = {
            key: [self.criterion(c, (key, i), kind) for i, c in enumerate(getattr(spec, key))]
            for key, kind in sections
        }
        for key in ("risks", "outcomes"):
            for i, fact in enumerate(getattr(spec, key)):
                self.citations(fact.cite, (key, i, "cite"))
                self.evidence_status(fact.evidence, (key, i, "evidence"))
        self.duplicate_ids()
        if len(self.ctx.diagnostics) > before or indication is None:
            return None
        return self.build(indication, {k: [c for c in v if c] for k, v in compiled.items()})

    def criterion(
        self, spec: CriterionSpec, path: PathKey, kind: CriterionKind
    ) -> Criterion | None:
        node = self.expressions.compile(spec.when, (*path, "when"))
        self.citations(spec.cite, (*path, "cite"))
        self.evidence_status(spec.evidence, (*path, "evidence"))
        if node is None:
            return None
        used = tuple(dict.fromkeys(atom.feature for atom in atoms(node)))
        text = spec.when if isinstance(spec.when, str) else render(node)
        return Criterion(
            spec.id,
            kind,
            spec.title,
            node,
            text,
            tuple(spec.cite),
            spec.source,
            spec.evidence,
            spec.note,
            used,
        )

    def citations(self, cite: list[str], path: PathKey) -> None:
        for i, ident in enumerate(cite):
            if ident not in self.evidence:
                self.ctx.error(
                    Code.UNKNOWN_CITATION,
                    f"unknown citation {ident!r}; add it to evidence.yaml",
                    self.doc,
                    (*path, i),
                )

    def evidence_status(self, status: EvidenceStatus, path: PathKey) -> None:
        if status is EvidenceStatus.UNVERIFIED:
            self.ctx.error(
                Code.UNVERIFIED_THRESHOLD,
                "an unverified fact may only appear in `notes`, never as a criterion "
                "or a documented figure",
                self.doc,
                path,
            )

    def duplicate_ids(self) -> None:
        spec = self.spec
        criteria = [(spec.indication_criterion.id, ("indication_criterion", "id"))] + [
            (c.id, (key, i, "id"))
            for key in ("inclusions", "exclusions", "cautions")
            for i, c in enumerate(getattr(spec, key))
        ]
        facts = [
            (f.id, (key, i, "id"))
            for key in ("risks", "outcomes")
            for i, f in enumerate(getattr(spec, key))
        ]
        _unique(iter(criteria), "criterion", self.doc, self.ctx)
        _unique(iter(facts), "fact", self.doc, self.ctx)

    def build(self, indication: Criterion, compiled: dict[str, list[Criterion]]) -> RuleSet:
        spec = self.spec
        cited = [
            *spec.indication_criterion.cite,
            *(
                c
                for key in ("inclusions", "exclusions", "cautions", "risks", "outcomes")
                for item in getattr(spec, key)
                for c in item.cite
            ),
        ]
        citations = tuple(dict.fromkeys(cited))
        used = sorted(
            {
                f
                for c in (indication, *(c for v in compiled.values() for c in v))
                for f in c.features
            }
        )
        snapshot = self.snapshot(used, citations)
        return RuleSet(
            id=spec.id,
            version=spec.version,
            hash=content_hash(snapshot),
            title=spec.title,
            therapy=spec.therapy,
            indication=spec.indication,
            protocol=spec.protocol,
            source=spec.source,
            review_status=spec.review.status,
            review_note=spec.review.note,
            file=self.doc.file,
            indication_criterion=indication,
            inclusions=tuple(compiled["inclusions"]),
            exclusions=tuple(compiled["exclusions"]),
            cautions=tuple(compiled["cautions"]),
            risks=tuple(spec.risks),
            outcomes=tuple(spec.outcomes),
            notes=tuple(spec.notes),
            citations=citations,
            snapshot=snapshot,
        )

    def snapshot(self, used: list[str], citations: tuple[str, ...]) -> dict[str, Any]:
        """What the rule set means: its content and the definitions it relies on, as JSON.

        A changed feature range or citation changes it; reformatting the file does not.
        """
        return {
            "ruleset": self.spec.model_dump(mode="json"),
            "features": {f: self.features[f].spec.model_dump(mode="json") for f in used},
            "evidence": {e: self.evidence[e].model_dump(mode="json") for e in citations},
        }


def content_hash(snapshot: Mapping[str, Any]) -> str:
    canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _rulesets(
    rules_dir: Path, features: dict[str, Feature], evidence: dict[str, EvidenceSpec], ctx: _Context
) -> dict[str, RuleSet]:
    rulesets: dict[str, RuleSet] = {}
    first_file: dict[str, str] = {}
    files = sorted((rules_dir / "therapies").glob("*.yaml"))
    for path in files:
        doc = _parse(path, ctx)
        spec = _validate(doc, RuleSetSpec, ctx) if doc else None
        if doc is None or spec is None:
            continue
        if spec.id in first_file:
            ctx.error(
                Code.DUPLICATE_ID,
                f"rule set id {spec.id!r} is already used by {first_file[spec.id]}",
                doc,
                ("id",),
            )
            continue
        first_file[spec.id] = doc.file
        ruleset = _RuleSetCompiler(doc, spec, features, evidence, ctx).compile()
        if ruleset is not None:
            rulesets[spec.id] = ruleset
    return rulesets


def check_rules(rules_dir: Path) -> tuple[RuleBase | None, list[Diagnostic]]:
    """Load a rules directory; return the rule base (None on any error) and all diagnostics."""
    ctx = _Context()
    if not rules_dir.is_dir():
        ctx.diagnostics.append(
            Diagnostic(
                Code.FILE_MISSING, "rules directory does not exist", _doc_position(rules_dir)
            )
        )
        return None, ctx.diagnostics
    features, evidence = _catalogue(rules_dir, ctx)
    if ctx.diagnostics:
        # Every criterion would be reported against a broken catalogue: noise, not help.
        return None, ctx.diagnostics
    rulesets = _rulesets(rules_dir, features, evidence, ctx)
    if ctx.diagnostics:
        return None, ctx.diagnostics
    combined = hashlib.sha256("".join(r.hash for r in rulesets.values()).encode()).hexdigest()
    return RuleBase(features, evidence, rulesets, "sha256:" + combined), []


def load_rules(rules_dir: Path) -> RuleBase:
    """Load a rules directory or raise RuleLoadError with every diagnostic."""
    base, diagnostics = check_rules(rules_dir)
    if base is None:
        raise RuleLoadError(diagnostics)
    return base


def rebuild(snapshot: Mapping[str, Any], expected_hash: str) -> RuleBase:
    """Rebuild one rule set from a stored snapshot, as a rule base holding only it.

    This is how a recorded decision is replayed with the exact rule set version that gave it.
    The snapshot goes through the same validation and compilation as a file; the result must
    hash to `expected_hash`, or the snapshot is not the version it claims to be.
    """
    ctx = _Context()
    doc = LocatedDocument(f"<stored {expected_hash[:19]}>", snapshot)
    parts = snapshot if isinstance(snapshot, Mapping) else {}
    features = _snapshot_part(parts, "features", FeatureSpec, doc, ctx)
    evidence = _snapshot_part(parts, "evidence", EvidenceSpec, doc, ctx)
    spec = validate_model(RuleSetSpec, parts.get("ruleset"), doc, ctx.diagnostics, ("ruleset",))
    ruleset = None
    if spec is not None and not ctx.diagnostics:
        catalogue = {f.id: Feature(f) for f in features}
        citations = {e.id: e for e in evidence}
        ruleset = _RuleSetCompiler(doc, spec, catalogue, citations, ctx).compile()
    if ruleset is not None and ruleset.hash != expected_hash:
        ctx.error(Code.SCHEMA, f"snapshot hashes to {ruleset.hash}, not {expected_hash}", doc, ())
    if ruleset is None or ctx.diagnostics:
        raise RuleLoadError(ctx.diagnostics)
    return RuleBase(
        {f.id: Feature(f) for f in features},
        {e.id: e for e in evidence},
        {ruleset.id: ruleset},
        ruleset.hash,
    )


def _snapshot_part(
    parts: Mapping[str, Any], key: str, model: type[M], doc: LocatedDocument, ctx: _Context
) -> list[M]:
    items = parts.get(key)
    if not isinstance(items, Mapping):
        ctx.error(Code.SCHEMA, f"{key}: expected a mapping", doc, (key,))
        return []
    valid = (validate_model(model, v, doc, ctx.diagnostics, (key, k)) for k, v in items.items())
    return [v for v in valid if v is not None]
