"""Load a rules directory: parse, validate in named stages, compile.

    1. parse     YAML with positions; syntax errors and duplicate keys
    2. schema    the pydantic file models (schema.py)
    3. catalogue feature units, ranges, enums; duplicate feature and evidence ids; the
                 features' derivations (derive.py) and the safety floor (floor.py)
    4. fragments each shared fragment's criteria, compiled once; unknown fragments and
                 include cycles among them
    5. compile   each rule set's expressions against the catalogue: features, types, units,
                 ranges; citations; duplicate ids; unverified evidence used as a threshold;
                 its included fragments (therapy, id clashes); then the safety floor: a rule
                 set that does not exclude on a general contraindication of its therapy

Every stage collects diagnostics; a stage runs on whatever the previous one could validate,
so one run reports as much as it can. Any diagnostic at all fails the load: a rule set that
is half-right is not one a clinician should be shown.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.engine.compile import ExpressionCompiler, render
from app.engine.derive import compile_derivations
from app.engine.diagnostics import Code, Diagnostic, Position, RuleLoadError
from app.engine.floor import compile_floor, floor_gaps
from app.engine.located_yaml import LocatedDocument, PathKey, display_path, load_located
from app.engine.model import (
    Criterion,
    CriterionKind,
    Feature,
    Floor,
    Origin,
    RuleBase,
    RuleSet,
    atoms,
)
from app.engine.schema import (
    CriterionSpec,
    EvidenceFile,
    EvidenceSpec,
    EvidenceStatus,
    FeatureFile,
    FeatureSpec,
    FeatureType,
    FragmentSpec,
    RuleSetSpec,
)
from app.engine.unit_memo import recording
from app.engine.units import UnitError, anticipate, validate_unit

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
        _check_units(spec, doc, path, ctx)
    elif spec.type is FeatureType.ENUM and not spec.values:
        ctx.error(Code.SCHEMA, f"enum feature {spec.id!r} needs its values", doc, path)
    elif spec.type is not FeatureType.ENUM and spec.values:
        ctx.error(Code.SCHEMA, f"only enum features have values ({spec.id!r})", doc, path)
    if spec.type is not FeatureType.NUMBER and (spec.unit or spec.range):
        ctx.error(
            Code.SCHEMA, f"only number features have a unit or range ({spec.id!r})", doc, path
        )
    if spec.integer is not None and (spec.type is not FeatureType.NUMBER or spec.derive):
        ctx.error(
            Code.SCHEMA,
            f"only number features given, not derived, are whole numbers ({spec.id!r})",
            doc,
            (*path, "integer"),
        )
    elif spec.integer == "completed" and spec.range is not None and spec.range[0] < 0:
        # Rounding down to completed units is only truncation for values >= 0.
        ctx.error(
            Code.SCHEMA, f"completed units cannot be negative ({spec.id!r})", doc, (*path, "range")
        )


def _check_units(spec: FeatureSpec, doc: LocatedDocument, path: PathKey, ctx: _Context) -> None:
    valid = True
    for key, unit in [("unit", spec.unit), *(("other_units", u) for u in spec.other_units)]:
        if unit is None:
            continue
        try:
            validate_unit(unit)
        except UnitError as exc:
            ctx.error(Code.UNIT, str(exc), doc, (*path, key))
            valid = False
    if valid and spec.unit is not None:
        for other in spec.other_units:  # what the form and clients will send
            anticipate(other, spec.unit, spec.molar_mass)


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
) -> tuple[dict[str, Feature], dict[str, EvidenceSpec], list[tuple[Floor, Position]]]:
    features: dict[str, Feature] = {}
    evidence: dict[str, EvidenceSpec] = {}
    floor: list[tuple[Floor, Position]] = []
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
        if not ctx.diagnostics:
            derived = [
                (spec, ("features", i))
                for i, spec in enumerate(feature_file.features)
                if spec.derive and features[spec.id].spec is spec
            ]
            features = compile_derivations(derived, features, doc, ctx.diagnostics)
            floor = compile_floor(feature_file.safety_floor, features, doc, ctx.diagnostics)
            floor_ids = enumerate(feature_file.safety_floor)
            _unique(
                ((f.id, ("safety_floor", i, "id")) for i, f in floor_ids),
                "safety floor",
                doc,
                ctx,
            )
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
    return features, evidence, floor


@dataclass(frozen=True, slots=True)
class _Scope:
    """What criteria are compiled against, and where their diagnostics go."""

    features: dict[str, Feature]
    evidence: dict[str, EvidenceSpec]
    ctx: _Context
    # Specs as JSON, by id(spec): a feature, citation or fragment is dumped once per load,
    # not once for every rule set whose snapshot holds it.
    dumps: dict[int, dict[str, Any]] = field(default_factory=dict)

    def dumped(self, spec: BaseModel) -> dict[str, Any]:
        dump = self.dumps.get(id(spec))
        if dump is None:
            dump = self.dumps[id(spec)] = spec.model_dump(mode="json")
        return dump


class _Criteria:
    """Compiles criterion specs found in one document (a rule set, a fragment, a snapshot)."""

    def __init__(self, doc: LocatedDocument, scope: _Scope) -> None:
        self.doc, self.evidence, self.ctx = doc, scope.evidence, scope.ctx
        self.expressions = ExpressionCompiler(doc, scope.features, scope.ctx.diagnostics)

    def criterion(
        self, spec: CriterionSpec, path: PathKey, kind: CriterionKind, origin: Origin | None = None
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
            origin,
        )

    def sections(
        self, spec: RuleSetSpec | FragmentSpec, prefix: PathKey, origin: Origin | None = None
    ) -> dict[str, list[Criterion | None]]:
        return {
            key: [
                self.criterion(c, (*prefix, key, i), kind, origin)
                for i, c in enumerate(getattr(spec, key))
            ]
            for key, kind in _SECTIONS
        }

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


_SECTIONS = (
    ("inclusions", CriterionKind.INCLUSION),
    ("exclusions", CriterionKind.EXCLUSION),
    ("cautions", CriterionKind.CAUTION),
)


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A fragment compiled once per load; every rule set that includes it shares its criteria."""

    spec: FragmentSpec
    doc: LocatedDocument
    prefix: PathKey  # () in its own file; ("fragments", id) in a stored snapshot
    criteria: dict[str, tuple[Criterion, ...]]

    def position(self, *path: str | int) -> Position:
        return self.doc.position((*self.prefix, *path))


def _compile_fragment(
    spec: FragmentSpec, doc: LocatedDocument, prefix: PathKey, scope: _Scope
) -> _Fragment:
    ctx = scope.ctx
    origin = Origin(spec.id, spec.title, spec.applies_to)
    compiled = _Criteria(doc, scope).sections(spec, prefix, origin)
    criteria = [
        (c.id, (*prefix, key, i, "id"))
        for key, _ in _SECTIONS
        for i, c in enumerate(getattr(spec, key))
    ]
    _unique(iter(criteria), "criterion", doc, ctx)
    return _Fragment(
        spec,
        doc,
        prefix,
        {key: tuple(c for c in items if c) for key, items in compiled.items()},
    )


def _check_fragment_graph(fragments: Mapping[str, _Fragment], ctx: _Context) -> None:
    """Unknown fragments and include cycles among fragments, each reported once, where the
    offending `include` entry is written."""
    for fragment in fragments.values():
        for i, ident in enumerate(fragment.spec.include):
            if ident not in fragments:
                ctx.error(
                    Code.UNKNOWN_FRAGMENT,
                    _unknown_fragment(ident, fragments),
                    fragment.doc,
                    (*fragment.prefix, "include", i),
                )
    _check_cycles(fragments, ctx)


def _check_cycles(fragments: Mapping[str, _Fragment], ctx: _Context) -> None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(ident: str, path: list[str]) -> None:
        state[ident] = 1
        fragment = fragments[ident]
        for i, child in enumerate(fragment.spec.include):
            if child not in fragments:
                continue
            if state.get(child) == 1:
                cycle = " -> ".join([*path[path.index(child) :], child])
                ctx.error(
                    Code.INCLUDE_CYCLE,
                    f"include cycle: {cycle}",
                    fragment.doc,
                    (*fragment.prefix, "include", i),
                )
            elif child not in state:
                visit(child, [*path, child])
        state[ident] = 2

    for ident in fragments:
        if ident not in state:
            visit(ident, [ident])


def _unknown_fragment(ident: str, fragments: Mapping[str, _Fragment]) -> str:
    close = difflib.get_close_matches(ident, list(fragments), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(sorted(fragments)) or "none"
    return f"unknown fragment {ident!r}{hint}; fragments: {known}"


class _RuleSetCompiler:
    """Stage 5 for one rule set (a file, or a stored snapshot's `ruleset` part)."""

    def __init__(
        self,
        doc: LocatedDocument,
        spec: RuleSetSpec,
        scope: _Scope,
        fragments: Mapping[str, _Fragment],
        *,
        prefix: PathKey = (),
    ) -> None:
        self.doc, self.spec, self.features, self.ctx = doc, spec, scope.features, scope.ctx
        self.evidence = scope.evidence
        self.scope = scope
        self.fragments = fragments
        self.prefix = prefix
        self.criteria = _Criteria(doc, scope)

    def at(self, *path: str | int) -> PathKey:
        return (*self.prefix, *path)

    def compile(self) -> RuleSet | None:
        before = len(self.ctx.diagnostics)
        spec = self.spec
        indication = self.criteria.criterion(
            spec.indication_criterion, self.at("indication_criterion"), CriterionKind.INDICATION
        )
        compiled = self.criteria.sections(spec, self.prefix)
        for key in ("risks", "outcomes"):
            for i, fact in enumerate(getattr(spec, key)):
                self.criteria.citations(fact.cite, self.at(key, i, "cite"))
                self.criteria.evidence_status(fact.evidence, self.at(key, i, "evidence"))
        self.duplicate_ids()
        included = self.included()
        if len(self.ctx.diagnostics) > before or indication is None:
            return None
        own = {k: [c for c in v if c] for k, v in compiled.items()}
        return self.build(indication, own, included)

    def included(self) -> list[_Fragment]:
        """The fragments this rule set applies, in reading order (each once, however often it
        is reached), with their therapy and criterion ids checked against the rule set."""
        order: list[_Fragment] = []
        for i, ident in enumerate(self.spec.include):
            if ident not in self.fragments:
                self.ctx.error(
                    Code.UNKNOWN_FRAGMENT,
                    _unknown_fragment(ident, self.fragments),
                    self.doc,
                    self.at("include", i),
                )
                continue
            for fragment in self.reached(ident, set()):
                if fragment not in order:
                    order.append(fragment)
                    self.therapy(fragment, i)
        self.clashes(order)
        return order

    def reached(self, ident: str, seen: set[str]) -> list[_Fragment]:
        """`ident` and what it includes, depth first; a cycle was reported with the fragments."""
        fragment = self.fragments.get(ident)
        if fragment is None or ident in seen:
            return []
        seen.add(ident)
        below = (f for child in fragment.spec.include for f in self.reached(child, seen))
        return [fragment, *below]

    def therapy(self, fragment: _Fragment, i: int) -> None:
        spec = fragment.spec
        if self.spec.therapy in spec.therapies and self.spec.indication in spec.indications:
            return
        therapies = ", ".join(t.value for t in spec.therapies)
        indications = ", ".join(t.value for t in spec.indications)
        self.ctx.error(
            Code.FRAGMENT_THERAPY,
            f"fragment {spec.id!r} applies to {therapies} in {indications}, not to "
            f"{self.spec.therapy.value} in {self.spec.indication.value}",
            self.doc,
            self.at("include", i),
        )

    def clashes(self, included: list[_Fragment]) -> None:
        spec = self.spec
        owners: dict[str, tuple[LocatedDocument, PathKey]] = {
            spec.indication_criterion.id: (self.doc, self.at("indication_criterion", "id"))
        }
        for key, _ in _SECTIONS:
            for i, c in enumerate(getattr(spec, key)):
                owners.setdefault(c.id, (self.doc, self.at(key, i, "id")))
        for fragment in included:
            for key, _ in _SECTIONS:
                for i, c in enumerate(getattr(fragment.spec, key)):
                    where = fragment.position(key, i, "id")
                    first = owners.get(c.id)
                    if first is None:
                        owners[c.id] = (fragment.doc, (*fragment.prefix, key, i, "id"))
                        continue
                    doc, path = first
                    self.ctx.error(
                        Code.INCLUDE_CLASH,
                        f"criterion id {c.id!r} of included fragment {fragment.spec.id!r} "
                        f"({where}) clashes with the one at {doc.position(path)}; rename one",
                        doc,
                        path,
                    )

    def duplicate_ids(self) -> None:
        spec = self.spec
        criteria = [(spec.indication_criterion.id, self.at("indication_criterion", "id"))] + [
            (c.id, self.at(key, i, "id"))
            for key, _ in _SECTIONS
            for i, c in enumerate(getattr(spec, key))
        ]
        facts = [
            (f.id, self.at(key, i, "id"))
            for key in ("risks", "outcomes")
            for i, f in enumerate(getattr(spec, key))
        ]
        _unique(iter(criteria), "criterion", self.doc, self.ctx)
        _unique(iter(facts), "fact", self.doc, self.ctx)

    def build(
        self, indication: Criterion, own: dict[str, list[Criterion]], included: list[_Fragment]
    ) -> RuleSet:
        spec = self.spec
        sections = {
            key: (*own[key], *(c for f in included for c in f.criteria[key]))
            for key, _ in _SECTIONS
        }
        every = (indication, *(c for v in sections.values() for c in v))
        cited = [
            *(c for criterion in every for c in criterion.citations),
            *(c for key in ("risks", "outcomes") for item in getattr(spec, key) for c in item.cite),
        ]
        citations = tuple(dict.fromkeys(cited))
        used = sorted({f for c in every for f in c.features})
        snapshot = self.snapshot(used, citations, included)
        deciding = (indication, *sections["inclusions"], *sections["exclusions"])
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
            inclusions=sections["inclusions"],
            exclusions=sections["exclusions"],
            cautions=sections["cautions"],
            risks=tuple(spec.risks),
            outcomes=tuple(spec.outcomes),
            notes=tuple(spec.notes),
            citations=citations,
            includes=tuple(f.spec.id for f in included),
            confirmations=frozenset(
                f for c in deciding for f in c.features if self.features[f].is_confirmation
            ),
            snapshot=snapshot,
        )

    def snapshot(
        self, used: list[str], citations: tuple[str, ...], included: list[_Fragment]
    ) -> dict[str, Any]:
        """What the rule set means: its content, the fragments it includes and the definitions
        it relies on, as JSON.

        A changed feature range, citation or included fragment changes it; reformatting a file
        does not.
        """
        dumped = self.scope.dumped
        return {
            "ruleset": self.spec.model_dump(mode="json"),
            "fragments": {f.spec.id: dumped(f.spec) for f in included},
            "features": {f: dumped(self.features[f].spec) for f in used},
            "evidence": {e: dumped(self.evidence[e]) for e in citations},
        }


def content_hash(snapshot: Mapping[str, Any]) -> str:
    canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _fragments(rules_dir: Path, scope: _Scope) -> dict[str, _Fragment]:
    """Stage 4a: every rules_dir/fragments/*.yaml, compiled once."""
    ctx = scope.ctx
    fragments: dict[str, _Fragment] = {}
    for path in sorted((rules_dir / "fragments").glob("*.yaml")):
        doc = _parse(path, ctx)
        spec = _validate(doc, FragmentSpec, ctx) if doc else None
        if doc is None or spec is None:
            continue
        if spec.id in fragments:
            first = fragments[spec.id].doc.file
            message = f"fragment id {spec.id!r} is already used by {first}"
            ctx.error(Code.DUPLICATE_ID, message, doc, ("id",))
            continue
        fragments[spec.id] = _compile_fragment(spec, doc, (), scope)
    _check_fragment_graph(fragments, ctx)
    return fragments


def _rulesets(
    rules_dir: Path, scope: _Scope, fragments: Mapping[str, _Fragment], floor: Sequence[Floor]
) -> dict[str, RuleSet]:
    ctx = scope.ctx
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
        ruleset = _RuleSetCompiler(doc, spec, scope, fragments).compile()
        if ruleset is not None:
            rulesets[spec.id] = ruleset
            for problem in floor_gaps(ruleset, floor, scope.features):
                ctx.error(Code.SAFETY_FLOOR, problem, doc, ("therapy",))
    return rulesets


def check_rules(rules_dir: Path) -> tuple[RuleBase | None, list[Diagnostic]]:
    """Load a rules directory; return the rule base (None on any error) and all diagnostics."""
    # The UCUM answers this load needs are kept for the next process (unit_memo.py).
    with recording():
        return _check_rules(rules_dir)


def _check_rules(rules_dir: Path) -> tuple[RuleBase | None, list[Diagnostic]]:
    ctx = _Context()
    if not rules_dir.is_dir():
        ctx.diagnostics.append(
            Diagnostic(
                Code.FILE_MISSING, "rules directory does not exist", _doc_position(rules_dir)
            )
        )
        return None, ctx.diagnostics
    features, evidence, floor = _catalogue(rules_dir, ctx)
    if ctx.diagnostics:
        # Every criterion would be reported against a broken catalogue: noise, not help.
        return None, ctx.diagnostics
    scope = _Scope(features, evidence, ctx)
    fragments = _fragments(rules_dir, scope)
    floors = [entry for entry, _ in floor]
    for entry, position in floor:
        if entry.fragment is not None and entry.fragment not in fragments:
            ctx.diagnostics.append(
                Diagnostic(
                    Code.UNKNOWN_FRAGMENT, _unknown_fragment(entry.fragment, fragments), position
                )
            )
    rulesets = _rulesets(rules_dir, scope, fragments, floors)
    if ctx.diagnostics:
        return None, ctx.diagnostics
    combined = hashlib.sha256("".join(r.hash for r in rulesets.values()).encode()).hexdigest()
    return RuleBase(features, evidence, rulesets, "sha256:" + combined, tuple(floors)), []


def load_rules(rules_dir: Path) -> RuleBase:
    """Load a rules directory or raise RuleLoadError with every diagnostic."""
    base, diagnostics = check_rules(rules_dir)
    if base is None:
        raise RuleLoadError(diagnostics)
    return base


def rebuild(snapshot: Mapping[str, Any], expected_hash: str) -> RuleBase:
    """Rebuild one rule set from a stored snapshot, as a rule base holding only it.

    This is how a recorded decision is replayed with the exact rule set version that gave it.
    The snapshot goes through the same validation and compilation as a file, fragments
    included; it must hash to `expected_hash`, or it is not the version it claims to be. The
    hash is taken of the snapshot as stored and, for snapshots written by this release, as
    compiled: a snapshot stored before a rule-file field existed (its default now dumped
    too) is still its own version.
    """
    ctx = _Context()
    doc = LocatedDocument(f"<stored {expected_hash[:19]}>", snapshot)
    parts = snapshot if isinstance(snapshot, Mapping) else {}
    features = _snapshot_part(parts, "features", FeatureSpec, doc, ctx)
    evidence = _snapshot_part(parts, "evidence", EvidenceSpec, doc, ctx)
    stored_fragments = _snapshot_fragments(parts, doc, ctx)
    spec = validate_model(RuleSetSpec, parts.get("ruleset"), doc, ctx.diagnostics, ("ruleset",))
    ruleset = None
    if spec is not None and not ctx.diagnostics:
        scope = _Scope({f.id: Feature(f) for f in features}, {e.id: e for e in evidence}, ctx)
        fragments = {
            f.id: _compile_fragment(f, doc, ("fragments", f.id), scope) for f in stored_fragments
        }
        ruleset = _RuleSetCompiler(doc, spec, scope, fragments, prefix=("ruleset",)).compile()
    if ruleset is not None and ruleset.hash != expected_hash:
        if content_hash(parts) == expected_hash:
            ruleset = replace(ruleset, hash=expected_hash, snapshot=parts)
        else:
            ctx.error(
                Code.SCHEMA, f"snapshot hashes to {ruleset.hash}, not {expected_hash}", doc, ()
            )
    if ruleset is None or ctx.diagnostics:
        raise RuleLoadError(ctx.diagnostics)
    return RuleBase(
        {f.id: Feature(f) for f in features},
        {e.id: e for e in evidence},
        {ruleset.id: ruleset},
        ruleset.hash,
    )


def _snapshot_fragments(
    parts: Mapping[str, Any], doc: LocatedDocument, ctx: _Context
) -> list[FragmentSpec]:
    """Snapshots stored before fragments existed have none."""
    if parts.get("fragments") is None:
        return []
    return _snapshot_part(parts, "fragments", FragmentSpec, doc, ctx)


def _snapshot_part(
    parts: Mapping[str, Any], key: str, model: type[M], doc: LocatedDocument, ctx: _Context
) -> list[M]:
    items = parts.get(key)
    if not isinstance(items, Mapping):
        ctx.error(Code.SCHEMA, f"{key}: expected a mapping", doc, (key,))
        return []
    valid = (validate_model(model, v, doc, ctx.diagnostics, (key, k)) for k, v in items.items())
    return [v for v in valid if v is not None]
