"""The compiled rule sets (codegen.py) against the reference interpreter: the same Decision,
trace included, on random rule trees and on every shipped rule set."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.codegen import compile_ruleset
from app.engine.evaluate import Decision, Status, decide, interpret
from app.engine.inputs import INPUT, FeatureValue, _Issue, _value, checker, normalise
from app.engine.model import Between, Compare, Op, RuleBase, RuleSet
from app.engine.schema import FeatureType
from app.engine.vignettes import load_vignettes
from tests.conftest import SHIPPED_RULES
from tests.screening.backends import Row
from tests.screening.test_sql_backend import given_values, patients, rulesets


def same(a: Decision, b: Decision) -> None:
    """Field by field, so a failure names what differs; margins compared exactly."""
    assert a.ruleset is b.ruleset
    assert (a.status, a.missing, a.to_confirm) == (b.status, b.missing, b.to_confirm)
    assert a.record == b.record
    for ours, theirs in zip((*a.criteria, *a.cautions), (*b.criteria, *b.cautions), strict=True):
        assert ours.criterion is theirs.criterion
        assert ours.result is theirs.result, ours.criterion.id
        assert ours.trace == theirs.trace, ours.criterion.id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rulesets("random"), st.lists(patients(), min_size=1, max_size=8))
def test_random_rule_trees_decide_as_the_interpreter(ruleset: RuleSet, rows: list[Row]) -> None:
    for row in rows:
        values = given_values(row)
        same(decide(ruleset, values), interpret(ruleset, values))


def random_patient(rules: RuleBase, rng: random.Random) -> dict[str, Any]:
    """Every catalogue feature, each unknown one time in six, inside its plausible range and
    often exactly on a threshold (integers), so boundaries are crossed both ways."""
    patient: dict[str, Any] = {}
    for feature in rules.features.values():
        spec = feature.spec
        if rng.random() < 1 / 6:
            continue
        if spec.type is FeatureType.BOOLEAN:
            patient[spec.id] = rng.random() < 0.3
        elif spec.type is FeatureType.ENUM:
            patient[spec.id] = rng.choice(spec.values or [])
        else:
            low, high = spec.range or (0.0, 100.0)
            high = min(high, low + 200)
            # A count or score is whole (a fraction is refused); an age may have one (rounded
            # down to completed years).
            digits = 0 if spec.integer == "exact" else rng.choice([0, 1])
            drawn = round(rng.uniform(low, high), digits)
            patient[spec.id] = min(max(drawn, low), high)
    return patient


def test_every_shipped_rule_set_decides_as_the_interpreter(shipped_rules: RuleBase) -> None:
    """Every clinical vignette, then each with one value forgotten (the indeterminate paths
    and their `missing`), against every shipped rule set; then random patients."""
    vignettes, problems = load_vignettes(SHIPPED_RULES / "tests", shipped_rules)
    assert not problems
    assert len(vignettes) > 400
    patients = [v.values for v in vignettes]
    patients += [
        {k: v for k, v in vignette.values.items() if k != forgotten}
        for vignette in vignettes[::4]
        for forgotten in vignette.values
    ]
    rng = random.Random(20261202)
    patients += [
        normalise(random_patient(shipped_rules, rng), shipped_rules.features) for _ in range(500)
    ]
    seen: dict[str, set[Status]] = {ident: set() for ident in shipped_rules.rulesets}
    for values in patients:
        for ruleset in shipped_rules.rulesets.values():
            compiled = decide(ruleset, values)
            same(compiled, interpret(ruleset, values))
            seen[ruleset.id].add(compiled.status)
    for ident, statuses in seen.items():  # not vacuous: every path of every rule set
        assert statuses == set(Status), ident


def test_margins_are_signed_distances_to_the_threshold(shipped_rules: RuleBase) -> None:
    """A margin is value - threshold for a comparison and the distance to the nearer bound
    (negative outside) for `between`: what the answer shows a clinician."""
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        values = normalise(random_patient(shipped_rules, rng), shipped_rules.features)
        for ruleset in shipped_rules.rulesets.values():
            for result in decide(ruleset, values).criteria:
                for trace in result.trace:
                    atom, given = trace.atom, trace.value
                    if given is None or trace.margin is None:
                        continue
                    value = given.value
                    assert isinstance(value, float)
                    if isinstance(atom, Between):
                        assert trace.margin == min(value - atom.low, atom.high - value)
                    else:
                        assert isinstance(atom, Compare)
                        assert isinstance(atom.value, float)
                        assert trace.margin == value - atom.value
                    checked += 1
    assert checked > 1000


def test_thresholds_that_have_no_literal_are_bound_not_written(golden_rules: RuleBase) -> None:
    """Generated source writes a threshold as a literal only when its repr reads back
    exactly; an infinity (no literal) still compares correctly."""
    ruleset = golden_rules.rulesets["demo"]
    source: str = compile_ruleset(ruleset).__source__  # type: ignore[attr-defined]
    assert "def decide(values):" in source
    assert "get('lvef_percent')" in source
    inclusion = ruleset.inclusions[0]
    unbounded = Compare("lvef_percent", Op.LT, math.inf, "lvef_percent < inf")
    odd = type(inclusion)(**{**_fields(inclusion), "when": unbounded, "id": "unbounded"})
    patched = type(ruleset)(**{**_fields(ruleset), "inclusions": (odd,)})
    values = {"lvef_percent": FeatureValue(50.0, "%", 50.0, "%")}
    decision = decide(patched, values)
    same(decision, interpret(patched, values))
    assert decision.criteria[1].result.value == "met"
    assert "inf" not in compile_ruleset(patched).__source__  # type: ignore[attr-defined]


def _fields(obj: Any) -> dict[str, Any]:
    return {
        name: getattr(obj, name)
        for name in obj.__dataclass_fields__
        if obj.__dataclass_fields__[name].init
    }


def test_a_rule_set_with_only_an_indication_still_decides(golden_rules: RuleBase) -> None:
    """No inclusion, exclusion or caution at all: the status comes from the indication."""
    demo = golden_rules.rulesets["demo"]
    bare = type(demo)(**{**_fields(demo), "inclusions": (), "exclusions": (), "cautions": ()})
    feature = demo.indication_criterion.features[0]
    for given_value, status in [
        (True, "eligible"),
        (False, "not_indicated"),
        (None, "indeterminate"),
    ]:
        values = given_values({feature: given_value})
        assert decide(bare, values).status.value == status
        same(decide(bare, values), interpret(bare, values))


def _outcome(check: Any, feature: Any, given: Any) -> Any:
    try:
        result = check(feature, given)
    except _Issue as issue:
        return ("issue", issue.code, str(issue), issue.suffix)
    return ("value", repr(result), [type(x) for x in result])  # repr: -0.0 is not 0.0


anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 0.0, -0.0, 1, 17.9, 18, 65, 65.5, 150, 2**53, 2**53 + 1, True, False]),
    st.text(max_size=12),
    st.none(),
    st.fixed_dictionaries({"value": st.floats(-1e3, 1e3) | st.integers(), "unit": st.just("%")}),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_compiled_input_checks_answer_as_the_general_one(
    shipped_rules: RuleBase, data: st.DataObject
) -> None:
    """Every feature's compiled check gives the same value, types included (an integer stays
    an integer as given, -0.0 is compared as 0.0) or the same issue as `_value`."""
    feature = data.draw(st.sampled_from(list(shipped_rules.features.values())))
    values = [*(feature.spec.values or []), *(feature.spec.range or ())]
    given_value = data.draw(anything | st.sampled_from(values or [None]))
    if given_value is None:
        return
    fast = _outcome(lambda f, g: checker(f)(g, INPUT), feature, given_value)
    general = _outcome(lambda f, g: _value(f, g, INPUT), feature, given_value)
    assert fast == general
