"""In-process evaluation: one patient against each rule set, with the full trace.

    .venv/bin/python -m benchmarks.bench_engine [--patients 2000] [--repeat 5]

Prints median and p99 per (patient, rule set) for `decide` (evaluation + trace) and for
`decide` + `present.decision` (the API's JSON dict), and for one patient against every
shipped rule set. Single process, single thread; timings with perf_counter_ns.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

from app.engine import present
from app.engine.evaluate import Values, decide
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.model import RuleSet
from app.settings import Settings
from benchmarks.patients import random_patient


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_all(
    fn: Callable[[Values], object], patients: Sequence[Values], repeat: int
) -> list[float]:
    """Microseconds per call, each patient timed `repeat` times."""
    samples = []
    for values in patients:
        for _ in range(repeat):
            start = time.perf_counter_ns()
            fn(values)
            samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    print(
        f"{label:<48} median {statistics.median(samples):8.1f} us   "
        f"p99 {percentile(samples, 0.99):8.1f} us   n={len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rules = load_rules(Settings().rules_dir)
    rng = random.Random(42)
    patients = [normalise(random_patient(rules, rng), rules.features) for _ in range(args.patients)]
    print(f"{len(rules.rulesets)} rule sets, {args.patients} patients x {args.repeat} repeats")
    for ruleset in rules.rulesets.values():

        def decide_one(values: Values, rs: RuleSet = ruleset) -> object:
            return decide(rs, values)

        def with_json(values: Values, rs: RuleSet = ruleset) -> object:
            return present.decision(decide(rs, values), rules)

        report(f"{ruleset.id}: decide + trace", measure_all(decide_one, patients, args.repeat))
        report(
            f"{ruleset.id}: decide + trace + JSON dict",
            measure_all(with_json, patients, args.repeat),
        )
    every = list(rules.rulesets.values())

    def all_decisions(values: Values) -> object:
        return [decide(r, values) for r in every]

    def all_json(values: Values) -> object:
        return [present.decision(decide(r, values), rules) for r in every]

    report(
        f"one patient x all {len(every)} rule sets: decide + trace",
        measure_all(all_decisions, patients, args.repeat),
    )
    report(
        f"one patient x all {len(every)} rule sets: + JSON dict",
        measure_all(all_json, patients, args.repeat),
    )


if __name__ == "__main__":
    main()
