"""Values implied by other values, declared in the catalogue (`derive:` on a feature).

    - id: prior_alkylating_or_irradiation
      derive:
        - when: prior_cyclophosphamide_iv_g > 0 g
          value: true
          because: cyclophosphamide is an alkylating agent

A clinician who entered 3 g of IV cyclophosphamide is not asked again whether the patient had
an alkylating agent. A derivation applies only when its condition is known to hold (Kleene: an
unknown condition derives nothing); the value it gives carries its reason as provenance, so the
trace says "derived: prior_cyclophosphamide_iv_g > 0 g (cyclophosphamide is an alkylating
agent)".

A value given against a derivation whose condition holds is replaced by it, and the answer
says so (`corrections`, and "it replaces the value given, false" in the trace): an
implication is a fact about the catalogue, not a guess (cyclophosphamide is an alkylating
agent), so a "no" beside a recorded dose is an error in the record, and the reading the dose
implies is the safe one: every shipped derivation implies a contraindication or a
treatment given. Refusing the whole evaluation instead would leave the clinician, the EHR
and the registry with no verdict for a patient whose record is plain about the dose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.engine.compile import ExpressionCompiler, render
from app.engine.diagnostics import Code, Diagnostic
from app.engine.evaluate import truth
from app.engine.inputs import FeatureValue, Provenance
from app.engine.located_yaml import LocatedDocument, PathKey
from app.engine.model import Derivation, Feature, Scalar, atoms
from app.engine.schema import FeatureSpec, FeatureType

DERIVED = "derived"


def compile_derivations(
    specs: Sequence[tuple[FeatureSpec, PathKey]],
    features: dict[str, Feature],
    doc: LocatedDocument,
    diagnostics: list[Diagnostic],
) -> dict[str, Feature]:
    """The catalogue with each feature's derivations compiled; diagnostics for a condition
    that does not compile, a value of the wrong type, derivations of one feature implying
    different values, and a cycle of derivations."""
    expressions = ExpressionCompiler(doc, features, diagnostics)
    out = dict(features)
    for spec, path in specs:
        compiled: list[Derivation] = []
        for j, item in enumerate(spec.derive):
            where = (*path, "derive", j)
            node = expressions.compile(item.when, (*where, "when"))
            problem = _value_problem(spec, item.value)
            if problem:
                diagnostics.append(
                    Diagnostic(Code.DERIVATION, problem, doc.position((*where, "value")))
                )
            if node is not None and not problem:
                text = item.when if isinstance(item.when, str) else render(node)
                compiled.append(Derivation(node, _typed(spec, item.value), item.because, text))
        if len({_key(d.value) for d in compiled}) > 1:
            diagnostics.append(
                Diagnostic(
                    Code.DERIVATION,
                    f"the derivations of {spec.id!r} imply different values; an implication "
                    "gives one value, whichever condition holds",
                    doc.position((*path, "derive")),
                )
            )
        elif compiled:
            out[spec.id] = Feature(spec, tuple(compiled))
    for spec, path in specs:
        cycle = _cycle(spec.id, out)
        if cycle:
            diagnostics.append(
                Diagnostic(
                    Code.DERIVATION,
                    f"derivation cycle: {' -> '.join(cycle)}",
                    doc.position((*path, "derive")),
                )
            )
    return out


def _key(value: Scalar) -> tuple[str, Scalar]:
    """`True == 1.0` in Python: compare values with their type."""
    return (type(value).__name__, value)


def _value_problem(spec: FeatureSpec, value: Scalar) -> str | None:
    if spec.type is FeatureType.BOOLEAN and not isinstance(value, bool):
        return f"{spec.id!r} is yes/no: derive true or false, not {value!r}"
    if spec.type is FeatureType.ENUM and value not in (spec.values or []):
        return f"{value!r} is not a value of {spec.id!r}"
    if spec.type is FeatureType.NUMBER:
        low, high = spec.range or (float("-inf"), float("inf"))
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{spec.id!r} is a number: derive a number, not {value!r}"
        if not low <= value <= high:
            return f"{value!r} is outside the plausible range of {spec.id!r}"
    return None


def _typed(spec: FeatureSpec, value: Scalar) -> Scalar:
    return float(value) if spec.type is FeatureType.NUMBER else value


def _cycle(start: str, features: Mapping[str, Feature]) -> list[str]:
    """A path of derivations from `start` back to itself, if any."""

    def needs(ident: str) -> list[str]:
        feature = features.get(ident)
        if feature is None:
            return []
        return [a.feature for d in feature.derivations for a in atoms(d.when)]

    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        ident, path = stack.pop()
        for nxt in needs(ident):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def derive(
    values: Mapping[str, FeatureValue], features: Mapping[str, Feature]
) -> dict[str, FeatureValue]:
    """`values` completed with what the catalogue derives from them.

    Each derived feature is settled after every derived feature its conditions read
    (`in_order`; the catalogue refuses cycles): it takes its implied value where one of its
    conditions holds on those settled values, else keeps the value given. One pass in that
    order gives the only consistent result, whatever the catalogue's order, even where a
    replaced value turns another condition false."""
    out = dict(values)
    for feature in in_order(features):
        have = out.get(feature.id)
        implied = feature.derivations[0].value  # the loader refuses two implied values
        if have is not None and have.value == implied:
            continue
        rule = next((r for r in feature.derivations if truth(r.when, out) is True), None)
        if rule is not None:
            out[feature.id] = _derived(feature, rule, have)
    return out


def in_order(features: Mapping[str, Feature]) -> list[Feature]:
    """The derived features, each after the derived features its conditions read, otherwise in
    catalogue order (a depth-first topological sort: the catalogue refuses cycles)."""
    derived = {f.id: f for f in features.values() if f.derivations}
    order: dict[str, Feature] = {}

    def visit(feature: Feature, path: frozenset[str]) -> None:
        for rule in feature.derivations:
            for atom in atoms(rule.when):
                below = derived.get(atom.feature)
                if below is not None and below.id not in order and below.id not in path:
                    visit(below, path | {feature.id})
        order.setdefault(feature.id, feature)

    for feature in derived.values():
        visit(feature, frozenset())
    return list(order.values())


def corrections(values: Mapping[str, FeatureValue]) -> list[tuple[str, FeatureValue]]:
    """The values given against an implication and replaced by it: the derived value keeps
    what was given (`given_value`, `provenance.replaced`), so an answer can say what was
    replaced and why."""
    return [(k, v) for k, v in values.items() if v.provenance.replaced is not None]


def _derived(feature: Feature, rule: Derivation, replaced: FeatureValue | None) -> FeatureValue:
    why = f"{rule.text} ({rule.because})"
    if replaced is None:
        return FeatureValue(
            rule.value, feature.unit, rule.value, feature.unit, Provenance(DERIVED, derivation=why)
        )
    shown = _shown(replaced)
    return FeatureValue(
        rule.value,
        feature.unit,
        replaced.given_value,
        replaced.given_unit,
        Provenance(
            DERIVED,
            derivation=f"{why}; it replaces the value given, {shown}",
            replaced=shown,
        ),
    )


def _shown(value: FeatureValue) -> str:
    shown_unit = (
        value.given_unit and value.given_unit != "1" and not value.given_unit.startswith("{")
    )
    unit = f" {value.given_unit}" if shown_unit else ""
    return f"{_json(value.given_value)}{unit}"


def _json(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)
