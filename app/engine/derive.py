"""Values implied by other values, declared in the catalogue (`derive:` on a feature).

    - id: prior_alkylating_or_irradiation
      derive:
        - when: prior_cyclophosphamide_iv_g > 0 g
          value: true
          because: cyclophosphamide is an alkylating agent

A clinician who entered 3 g of IV cyclophosphamide is not asked again whether the patient had
an alkylating agent. A derivation only fills a value that is unknown, and only when its
condition is known to hold (Kleene: an unknown condition derives nothing); the value it gives
carries its reason as provenance, so the trace says "derived: prior_cyclophosphamide_iv_g > 0 g
(cyclophosphamide is an alkylating agent)". A value given that contradicts a derivation whose
condition holds is an input error naming both, never silently overridden either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.engine.compile import ExpressionCompiler, render
from app.engine.diagnostics import Code, Diagnostic
from app.engine.evaluate import truth
from app.engine.inputs import FeatureValue, InputIssue, InvalidInput, Provenance
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
    that does not compile, a value of the wrong type and a cycle of derivations."""
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
        if compiled:
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
    values: Mapping[str, FeatureValue], features: Mapping[str, Feature], *, prefix: str = "features"
) -> dict[str, FeatureValue]:
    """`values` completed with what the catalogue derives from them; InvalidInput if a given
    value contradicts a derivation whose condition holds. Derivations may chain (the catalogue
    refuses cycles), so this repeats until nothing new is derived."""
    out = dict(values)
    derived = [f for f in features.values() if f.derivations]
    issues: list[InputIssue] = []
    changed = True
    while changed:
        changed = False
        for feature in derived:
            for rule in feature.derivations:
                if truth(rule.when, out) is not True:
                    continue
                have = out.get(feature.id)
                if have is None:
                    out[feature.id] = _derived(feature, rule)
                    changed = True
                elif have.value != rule.value and have.provenance.source != DERIVED:
                    issues.append(_contradiction(feature, rule, have, out, prefix))
    if issues:
        raise InvalidInput(list({i.field + i.message: i for i in issues}.values()))
    return out


def _derived(feature: Feature, rule: Derivation) -> FeatureValue:
    why = f"{rule.text} ({rule.because})"
    return FeatureValue(
        rule.value, feature.unit, rule.value, feature.unit, Provenance(DERIVED, derivation=why)
    )


def _contradiction(
    feature: Feature,
    rule: Derivation,
    have: FeatureValue,
    values: Mapping[str, FeatureValue],
    prefix: str,
) -> InputIssue:
    known = [a.feature for a in atoms(rule.when) if a.feature in values]
    used = ", ".join(f"{f} = {_shown(values[f])}" for f in known)
    return InputIssue(
        f"{prefix}.{feature.id}",
        "contradiction",
        f"{feature.id} is {_shown(have)}, but {used} implies {_json(rule.value)} "
        f"({rule.because}); correct one of them",
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
