"""The safety floor: general contraindications every rule set of a therapy must exclude on.

The catalogue (`safety_floor:` in features.yaml) names them, per therapy: pregnancy, active
infection and active malignancy for every cellular therapy, performance status for MSC and
CAR-T (EVIDENCE.md §8). The check is semantic, not a search for a criterion by name: a rule set
passes for a contraindication when a patient about whom *only* that contraindication is known
is `ineligible`. Kleene logic is monotone (learning a value never turns a known criterion
unknown), so such a patient stays ineligible whatever else is later learned: no completion of
the record can make them eligible. A rule set that forgets pregnancy, or writes it as a
caution, or hides it behind a value that may be unknown, fails.

Each contraindication is tried at the values that switch it on: true for a yes/no feature,
the threshold and the far end of the plausible range for `>=` / `<=`, both ends for
`between`, every value for `in`.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.engine.compile import ExpressionCompiler
from app.engine.diagnostics import Code, Diagnostic, Position
from app.engine.evaluate import Status, decide
from app.engine.inputs import FeatureValue
from app.engine.located_yaml import LocatedDocument, PathKey
from app.engine.model import Between, Compare, Feature, Floor, In, Node, Op, RuleSet, Scalar
from app.engine.schema import FeatureType, FloorSpec


def compile_floor(
    specs: Sequence[FloorSpec],
    features: dict[str, Feature],
    doc: LocatedDocument,
    diagnostics: list[Diagnostic],
) -> list[tuple[Floor, Position]]:
    expressions = ExpressionCompiler(doc, features, diagnostics)
    out: list[tuple[Floor, Position]] = []
    for i, spec in enumerate(specs):
        path: PathKey = ("safety_floor", i)
        node = expressions.compile(spec.when, (*path, "when"))
        if node is None:
            continue
        witnesses = _witnesses(node, features)
        if witnesses is None:
            diagnostics.append(
                Diagnostic(
                    Code.SAFETY_FLOOR,
                    "a safety-floor contraindication is one yes/no feature or one inclusive "
                    "comparison (>=, <=, between, in), so the values that switch it on are known",
                    doc.position((*path, "when")),
                )
            )
            continue
        floor = Floor(
            spec.id,
            spec.title,
            node,
            frozenset(spec.therapies),
            spec.policy,
            spec.fragment,
            witnesses,
        )
        out.append((floor, doc.position((*path, "fragment"))))
    return out


Witnesses = tuple[tuple[str, Scalar], ...]


def _witnesses(node: Node, features: dict[str, Feature]) -> Witnesses | None:
    if isinstance(node, In):
        return tuple((node.feature, v) for v in node.values)
    if isinstance(node, Between):
        return ((node.feature, node.low), (node.feature, node.high))
    if isinstance(node, Compare):
        return _compare_witnesses(node, features[node.feature])
    return None


def _compare_witnesses(node: Compare, feature: Feature) -> Witnesses | None:
    if feature.type is not FeatureType.NUMBER:
        return ((node.feature, node.value),) if node.op is Op.EQ else None
    low, high = feature.spec.range or (node.value, node.value)
    far = {Op.GE: high, Op.LE: low}.get(node.op)
    return None if far is None else ((node.feature, node.value), (node.feature, far))


def _shown(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else value


def switched_on(feature: Feature, value: Scalar) -> FeatureValue:
    """The value of a contraindication switched on, as the engine takes it."""
    return FeatureValue(value, feature.unit, value, feature.unit)


def applies(floor: Floor, ruleset: RuleSet) -> bool:
    return ruleset.therapy in floor.therapies


def floor_gaps(ruleset: RuleSet, floor: Sequence[Floor], features: dict[str, Feature]) -> list[str]:
    """What the rule set fails to exclude on, one message per contraindication."""
    problems: list[str] = []
    for entry in floor:
        if not applies(entry, ruleset):
            continue
        for feature_id, value in entry.witnesses:
            only = {feature_id: switched_on(features[feature_id], value)}
            status = decide(ruleset, only).status
            if status is not Status.INELIGIBLE:
                problems.append(_message(ruleset, entry, feature_id, value, status))
                break
    return problems


def _message(ruleset: RuleSet, entry: Floor, feature_id: str, value: Scalar, status: Status) -> str:
    shown = _shown(value)
    remedy = f"include fragment {entry.fragment!r}" if entry.fragment else "add an exclusion"
    return (
        f"{ruleset.therapy.value} rule sets must exclude on {entry.title!r} "
        f"(safety floor {entry.id!r}: {entry.policy}); with only {feature_id} = {shown} known, "
        f"{ruleset.id} gives {status.value}, not ineligible: {remedy}"
    )
