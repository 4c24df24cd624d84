"""The compiled rule tree and the catalogue it is checked against.

Everything here is immutable and built once at load time. Thresholds are already in the
feature's canonical unit, so evaluation never converts a unit and never parses text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from app.engine.schema import (
    EvidenceSpec,
    EvidenceStatus,
    FactSpec,
    FeatureSpec,
    FeatureType,
    Indication,
    ReviewStatus,
    Therapy,
)

Scalar: TypeAlias = float | bool | str


class Op(StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="


@dataclass(frozen=True, slots=True)
class Compare:
    """`feature op value`. Booleans (`ild_present`) compile to `== true`."""

    feature: str
    op: Op
    value: Scalar
    text: str


@dataclass(frozen=True, slots=True)
class Between:
    """`feature between low and high`, inclusive at both ends as clinicians read it."""

    feature: str
    low: float
    high: float
    text: str


@dataclass(frozen=True, slots=True)
class In:
    feature: str
    values: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Atom: TypeAlias = Compare | Between | In
Node: TypeAlias = Compare | Between | In | All | AnyOf | Not


def atoms(node: Node) -> list[Atom]:
    """The comparisons of a tree, left to right."""
    if isinstance(node, All | AnyOf):
        return [atom for child in node.children for atom in atoms(child)]
    if isinstance(node, Not):
        return atoms(node.child)
    return [node]


@dataclass(frozen=True, slots=True)
class Derivation:
    """`when` implies the feature's value (compiled from the catalogue's `derive`)."""

    when: Node
    value: Scalar
    because: str
    text: str


@dataclass(frozen=True, slots=True)
class Feature:
    spec: FeatureSpec
    derivations: tuple[Derivation, ...] = ()
    # Its input check compiled into one function (inputs.checker), built on first use.
    check: Any = field(default=None, init=False, repr=False, compare=False)
    # The values typed in that the check has answered, by type then value (inputs.checker):
    # what `normalise` looks up before calling the check. Empty until the check is built.
    seen: Any = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def type(self) -> FeatureType:
        return self.spec.type

    @property
    def unit(self) -> str | None:
        return self.spec.unit

    @property
    def is_confirmation(self) -> bool:
        return self.spec.confirmation is not None


class CriterionKind(StrEnum):
    INDICATION = "indication"
    INCLUSION = "inclusion"
    EXCLUSION = "exclusion"
    CAUTION = "caution"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a criterion included from a fragment comes from."""

    fragment: str
    title: str
    applies_to: str

    def label(self, source: str) -> str:
        """ "applies to all cellular therapies: Greco 2024 Table 1"."""
        return f"applies to {self.applies_to}: {source}"


@dataclass(frozen=True, slots=True, eq=False)
class Criterion:
    """Compared and hashed by identity: each load builds new ones, and presentation caches
    their static JSON per object."""

    id: str
    kind: CriterionKind
    title: str
    when: Node
    text: str
    citations: tuple[str, ...]
    source: str
    evidence: EvidenceStatus
    note: str | None
    features: tuple[str, ...]
    origin: Origin | None = None  # None: written in the rule set itself
    # Its patient-independent JSON (present.py), likewise built on first use.
    shown: Any = field(default=None, repr=False)
    wire: Any = field(default=None, repr=False)  # the same as bytes (wire.py)


@dataclass(frozen=True, slots=True)
class Floor:
    """A general contraindication of the safety floor, compiled, with the values that
    switch it on (the witnesses the toolchain tries)."""

    id: str
    title: str
    when: Node
    therapies: frozenset[Therapy]
    policy: str
    fragment: str | None
    witnesses: tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    id: str
    version: str
    hash: str
    title: str
    therapy: Therapy
    indication: Indication
    protocol: str
    source: str
    review_status: ReviewStatus
    review_note: str
    file: str
    indication_criterion: Criterion
    inclusions: tuple[Criterion, ...]
    exclusions: tuple[Criterion, ...]
    cautions: tuple[Criterion, ...]
    risks: tuple[FactSpec, ...]
    outcomes: tuple[FactSpec, ...]
    notes: tuple[str, ...]
    citations: tuple[str, ...]
    includes: tuple[str, ...]  # every fragment applied, directly or through another fragment
    confirmations: frozenset[str]  # the deciding features a clinician confirms
    # What `hash` is the hash of: the validated rule set and the definitions of the features and
    # citations it uses, as JSON. Stored with every decision so the rule set can be rebuilt.
    snapshot: Mapping[str, Any]
    # The rule set compiled into one function (codegen.py), built on first use and kept with
    # the rule set: a reload builds new rule sets, so it can never be stale.
    compiled: Any = field(default=None, init=False, repr=False, compare=False)
    layout: Any = field(default=None, init=False, repr=False, compare=False)  # evaluate.layout
    # Its criteria written as JSON bytes from a record (wire.py), compiled on first use.
    writer: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def deciding(self) -> tuple[Criterion, ...]:
        """The criteria that decide the status, in the order a clinician reads them."""
        return (self.indication_criterion, *self.inclusions, *self.exclusions)


@dataclass(frozen=True, slots=True, eq=False)
class RuleBase:
    """Everything loaded from one rules directory: the unit of atomic replacement."""

    features: dict[str, Feature]
    evidence: dict[str, EvidenceSpec]
    rulesets: dict[str, RuleSet]
    hash: str
    floor: tuple[Floor, ...] = ()
