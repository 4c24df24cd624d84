"""What changed between two rule bases, in the terms a clinical reviewer signs off.

Criteria are matched by id within a rule set. A criterion whose tree has the same shape (the
same features, operators and connectives) but other values is reported threshold by
threshold, in canonical units: re-writing `serum_creatinine > 177 umol/L` as `> 2.002224 mg/dL`
is no change, `< 40 %` to `< 45 %` is one threshold change, and so is `< 8 kPa` to
`< 60 mm[Hg]` (8 kPa is 60.0049 mmHg). Anything else is a logic change, shown whole.
A cohort diff (which patients change status) lives in `cohort_changes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from app.engine.evaluate import Decision, Status, decide, decisive
from app.engine.inputs import FeatureValue
from app.engine.model import (
    All,
    AnyOf,
    Between,
    Compare,
    Criterion,
    Feature,
    In,
    Node,
    Not,
    RuleBase,
    RuleSet,
    atoms,
)
from app.engine.schema import FactSpec


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Change:
    ruleset: str | None  # None: the shared catalogue (features, evidence)
    subject: str  # ruleset | criterion | threshold | logic | citations | risk | outcome | ...
    ident: str
    kind: ChangeKind
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.kind.value]
        text = f"{mark} {self.subject} {self.ident}"
        if self.kind is ChangeKind.CHANGED:
            return f"{text}: {self.old} -> {self.new}"
        shown = self.new if self.kind is ChangeKind.ADDED else self.old
        return f"{text}: {shown}" if shown else text

    def as_dict(self) -> dict[str, str | None]:
        return {
            "ruleset": self.ruleset,
            "subject": self.subject,
            "id": self.ident,
            "change": self.kind.value,
            "old": self.old,
            "new": self.new,
        }


T = TypeVar("T")


def _pairs(
    before: Mapping[str, T], after: Mapping[str, T]
) -> Iterator[tuple[str, T | None, T | None]]:
    """Match two id-keyed collections: the old ids in their order, then the new ones."""
    for ident in [*before, *(k for k in after if k not in before)]:
        yield ident, before.get(ident), after.get(ident)


def diff_rules(old: RuleBase, new: RuleBase) -> list[Change]:
    changes = list(_catalogue(old, new))
    for ident, before, after in _pairs(old.rulesets, new.rulesets):
        if before is None and after is not None:
            changes.append(Change(ident, "ruleset", ident, ChangeKind.ADDED, new=after.title))
        elif after is None and before is not None:
            changes.append(Change(ident, "ruleset", ident, ChangeKind.REMOVED, old=before.title))
        elif before is not None and after is not None and before.hash != after.hash:
            changes += _ruleset(old, new, before, after)
    return changes


def _catalogue(old: RuleBase, new: RuleBase) -> Iterator[Change]:
    tables: list[tuple[str, Mapping[str, object], Mapping[str, object]]] = [
        ("feature", _specs(old.features), _specs(new.features)),
        ("evidence", old.evidence, new.evidence),
    ]
    for subject, before, after in tables:
        for ident, a, b in _pairs(before, after):
            yield from _compare(None, subject, ident, a, b)


def _specs(features: Mapping[str, Feature]) -> dict[str, object]:
    return {k: f.spec for k, f in features.items()}


def _compare(
    ruleset: str | None, subject: str, ident: str, before: object, after: object
) -> Iterator[Change]:
    """Added / removed / changed, field by field for pydantic specs."""
    if before is None and after is not None:
        yield Change(ruleset, subject, ident, ChangeKind.ADDED, new=_title(after))
    elif after is None and before is not None:
        yield Change(ruleset, subject, ident, ChangeKind.REMOVED, old=_title(before))
    elif before != after:
        old_fields, new_fields = _fields(before), _fields(after)
        for name in old_fields:
            if old_fields[name] != new_fields[name]:
                yield Change(
                    ruleset,
                    subject,
                    f"{ident}.{name}",
                    ChangeKind.CHANGED,
                    old=_text(old_fields[name]),
                    new=_text(new_fields[name]),
                )


def _fields(spec: object) -> dict[str, object]:
    dump = getattr(spec, "model_dump", None)
    return dict(dump(mode="json")) if dump else {"value": spec}


def _title(spec: object) -> str | None:
    return str(getattr(spec, "title", None) or getattr(spec, "label", None) or "") or None


def _text(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "(none)" if value is None else str(value)


def _ruleset(old: RuleBase, new: RuleBase, before: RuleSet, after: RuleSet) -> list[Change]:
    ident = after.id
    changes = [
        Change(ident, "ruleset", f"{ident}.{name}", ChangeKind.CHANGED, old=a, new=b)
        for name, a, b in [
            ("version", before.version, after.version),
            ("review_status", before.review_status.value, after.review_status.value),
            ("title", before.title, after.title),
            ("protocol", before.protocol, after.protocol),
            ("source", before.source, after.source),
            ("includes", _text(list(before.includes)), _text(list(after.includes))),
        ]
        if a != b
    ]
    changes += _criteria(ident, before, after, old.features, new.features)
    for subject, a_facts, b_facts in [
        ("risk", before.risks, after.risks),
        ("outcome", before.outcomes, after.outcomes),
    ]:
        changes += _facts(ident, subject, a_facts, b_facts)
    removed_notes = [n for n in before.notes if n not in after.notes]
    added_notes = [n for n in after.notes if n not in before.notes]
    changes += [Change(ident, "note", "", ChangeKind.REMOVED, old=n) for n in removed_notes]
    changes += [Change(ident, "note", "", ChangeKind.ADDED, new=n) for n in added_notes]
    return changes


def _all_criteria(ruleset: RuleSet) -> dict[str, Criterion]:
    return {c.id: c for c in (*ruleset.deciding, *ruleset.cautions)}


def _criteria(
    ruleset: str,
    before: RuleSet,
    after: RuleSet,
    old_features: Mapping[str, Feature],
    new_features: Mapping[str, Feature],
) -> list[Change]:
    changes: list[Change] = []
    for ident, a, b in _pairs(_all_criteria(before), _all_criteria(after)):
        if b is None and a is not None:
            changes.append(
                Change(ruleset, a.kind.value, ident, ChangeKind.REMOVED, old=f"{a.title}: {a.text}")
            )
        elif a is None and b is not None:
            changes.append(
                Change(ruleset, b.kind.value, ident, ChangeKind.ADDED, new=f"{b.title}: {b.text}")
            )
        elif a is not None and b is not None:
            changes += _criterion(ruleset, a, b, old_features, new_features)
    return changes


def _criterion(
    ruleset: str,
    a: Criterion,
    b: Criterion,
    old_features: Mapping[str, Feature],
    new_features: Mapping[str, Feature],
) -> list[Change]:
    changes: list[Change] = []
    field_changes = [
        ("kind", a.kind.value, b.kind.value),
        ("title", a.title, b.title),
        ("evidence", a.evidence.value, b.evidence.value),
        ("source", a.source, b.source),
        ("origin", _origin(a), _origin(b)),
    ]
    changes += [
        Change(ruleset, "criterion", f"{a.id}.{name}", ChangeKind.CHANGED, old=x, new=y)
        for name, x, y in field_changes
        if x != y
    ]
    if a.citations != b.citations:
        changes.append(
            Change(
                ruleset,
                "citations",
                a.id,
                ChangeKind.CHANGED,
                old=_text(list(a.citations)),
                new=_text(list(b.citations)),
            )
        )
    if _shape(a.when) != _shape(b.when):
        changes.append(Change(ruleset, "logic", a.id, ChangeKind.CHANGED, old=a.text, new=b.text))
        return changes
    for x, y in zip(atoms(a.when), atoms(b.when), strict=True):
        old_text, new_text = canonical(x, old_features), canonical(y, new_features)
        if old_text != new_text:
            changes.append(
                Change(ruleset, "threshold", a.id, ChangeKind.CHANGED, old=old_text, new=new_text)
            )
    return changes


def _origin(criterion: Criterion) -> str:
    """Where a criterion is written: the rule set itself, or a shared fragment."""
    origin = criterion.origin
    return f"fragment {origin.fragment}" if origin else "the rule set"


def _shape(node: Node) -> object:
    """The tree without its values: what must match for a change to be a threshold change."""
    if isinstance(node, All | AnyOf):
        return (type(node).__name__, tuple(_shape(c) for c in node.children))
    if isinstance(node, Not):
        return ("not", _shape(node.child))
    if isinstance(node, Compare):
        return ("compare", node.feature, node.op.value)
    return (type(node).__name__, node.feature)


def canonical(atom: Compare | Between | In, features: Mapping[str, Feature]) -> str:
    """An atom in the feature's canonical unit, so equal thresholds read the same."""
    unit = features[atom.feature].unit
    suffix = f" {unit}" if unit else ""
    if isinstance(atom, Compare):
        value = atom.value
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, str):
            shown = value
        else:
            shown = f"{value:g}{suffix}"
        return f"{atom.feature} {atom.op.value} {shown}"
    if isinstance(atom, Between):
        return f"{atom.feature} between {atom.low:g} and {atom.high:g}{suffix}"
    return f"{atom.feature} in [{', '.join(atom.values)}]"


def _facts(
    ruleset: str, subject: str, before: Iterable[FactSpec], after: Iterable[FactSpec]
) -> list[Change]:
    pairs = _pairs({f.id: f for f in before}, {f.id: f for f in after})
    return [change for ident, a, b in pairs for change in _compare(ruleset, subject, ident, a, b)]


@dataclass(frozen=True, slots=True)
class StatusChange:
    patient: str
    ruleset: str
    old: Status | None  # None: the rule set does not exist on that side
    new: Status | None
    reasons: tuple[str, ...]  # the new decision's deciding criteria


def cohort_changes(
    old: RuleBase,
    new: RuleBase,
    patients: Iterable[tuple[str, Mapping[str, FeatureValue], Mapping[str, FeatureValue]]],
) -> list[StatusChange]:
    """For each (patient id, values under old, values under new): rule sets whose status moves."""
    ids = sorted(old.rulesets.keys() | new.rulesets.keys())
    changes: list[StatusChange] = []
    for patient, old_values, new_values in patients:
        for ident in ids:
            before = _decide(old.rulesets.get(ident), old_values)
            after = _decide(new.rulesets.get(ident), new_values)
            old_status = before.status if before else None
            new_status = after.status if after else None
            if old_status is not new_status:
                reasons = tuple(r.criterion.id for r in decisive(after)) if after else ()
                changes.append(StatusChange(patient, ident, old_status, new_status, reasons))
    return changes


def _decide(ruleset: RuleSet | None, values: Mapping[str, FeatureValue]) -> Decision | None:
    return decide(ruleset, values) if ruleset is not None else None
