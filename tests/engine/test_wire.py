"""The full view written from the record (wire.py) against `present.decision` rendered: the
same bytes, for every shipped rule set, on the clinical vignettes, random patients, values
derived or corrected, FHIR-mapped values and decisions set apart."""

from __future__ import annotations

import random
from datetime import datetime, time

from app.engine import present, wire
from app.engine.evaluate import decide
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, select, set_apart
from app.engine.vignettes import load_vignettes
from app.services import evaluations as service
from tests.conftest import SHIPPED_RULES
from tests.engine.test_compiled import random_patient
from tests.fhir.bundles import WRITTEN_ON, ssc_bundle


def test_every_decision_is_written_as_present_renders_it(shipped_rules: RuleBase) -> None:
    vignettes, problems = load_vignettes(SHIPPED_RULES / "tests", shipped_rules)
    assert not problems
    rng = random.Random(20261203)
    patients = [v.values for v in vignettes]
    patients += [
        normalise(random_patient(shipped_rules, rng), shipped_rules.features) for _ in range(200)
    ]
    rulesets = select(shipped_rules, None)
    reasons = 0
    for values in patients:
        decided = evaluate_all(rulesets, values)
        memo: dict[int, tuple[bytes, bytes]] = {}  # one per answer, as in `results`
        answered, every = [], []
        for decision, others in zip(decided, set_apart(decided), strict=True):
            reason = present.not_assessed(decision.ruleset, others) if others else None
            reasons += reason is not None
            expected = present.marked(present.decision(decision, shipped_rules), reason)
            written = wire.decision(decision, shipped_rules, reason, memo)
            assert present.render(written) == present.render(expected)
            answered.append((decision, reason))
            every.append(expected)
        assert present.render(wire.results(answered, shipped_rules)) == present.render(every)
    assert reasons > 0  # the set-apart branch was taken


def test_the_answer_sent_is_the_answer_read(shipped_rules: RuleBase) -> None:
    """`Decided.body` (written from the record) is `render` of `Decided.content` (built by
    `present` when read), with FHIR values, corrections and every indications option."""
    rng = random.Random(7)
    stamp = service.Stamp(
        "00000000-0000-4000-8000-000000000000", datetime.combine(WRITTEN_ON, time())
    )
    inputs = [service.PatientInput(features=random_patient(shipped_rules, rng)) for _ in range(30)]
    inputs.append(service.PatientInput(fhir=ssc_bundle()))
    # An explicit value against a catalogue implication is corrected (a derived provenance).
    given = {"prior_alkylating_or_irradiation": False, "prior_cyclophosphamide_iv_g": 3}
    inputs.append(service.PatientInput(features=given))
    corrected = 0
    for patient in inputs:
        for indications in ("all", "present"):
            options = service.Options(indications=indications)
            decided = service.decide(shipped_rules, patient, options, stamp)
            assert decided.wired
            assert decided.body == present.render(decided.content)
            corrected += "corrections" in decided.answer
    assert corrected  # a derived provenance was written


def test_a_rule_set_with_only_an_indication_is_written_as_present_renders_it(
    golden_rules: RuleBase,
) -> None:
    """The compiled writer's edges: one criterion, no cautions (an empty array), and every
    status a lone indication can give."""
    demo = golden_rules.rulesets["demo"]
    fields = {n: getattr(demo, n) for n, f in demo.__dataclass_fields__.items() if f.init}
    bare = type(demo)(**{**fields, "inclusions": (), "exclusions": (), "cautions": ()})
    feature = bare.indication_criterion.features[0]
    statuses = set()
    for given in (True, False, None):
        values = normalise({feature: given}, golden_rules.features)
        decision = decide(bare, values)
        statuses.add(decision.status)
        expected = present.render(present.marked(present.decision(decision, golden_rules), None))
        assert present.render(wire.decision(decision, golden_rules, None, {})) == expected
    assert len(statuses) == 3
