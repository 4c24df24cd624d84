"""Per patient on the peer cohort of shared/docs/BENCHMARK.md: Eligo against the hand-written
floor, measured in the same run.

    .venv/bin/python -m benchmarks.bench_peer [--patients 20000] [--repeat 5] [--keep DIR]

The floor is benchmarks/peer/handwritten.py, the peer rule set written by hand, called on the
patients as parsed from the cohort's JSONL. Against it, on the same patients: Eligo's
`decide` with its trace (inputs already normalised), `normalise` + `decide`, and
`normalise` + `decide` + `present.decision` (the API's answer dict), and, for context, with
`derive` as well (the API's in-process work per rule set). The peer rule set goes through
Eligo's own loader (benchmarks/peer/ruleset.py). Before timing, every patient's status and
criterion results are checked to agree (tests/benchmarks/test_peer.py does so too).

Then one patient against all shipped rule sets (`load_rules(Settings().rules_dir)`, patients of
benchmarks/patients.py): `decide` for each, and `decide` + answer dict for each, in absolute
microseconds (targets: 100 and 300 us), with the floor again in the same loop; and
`decide` + the answer's bytes as the API writes and sends them (wire.py, then `render`).

The machine is shared and noisy, so every figure is printed beside its ratio to the floor, and
the candidates are interleaved: per patient, each is timed once, in an order that rotates
(medians, p99); and in blocks of BLOCK patients, each candidate's block in turn (patients/s,
free of the per-call timer). Patient data is frozen out of the garbage collector's way
(`gc.freeze`) before timing; what the candidates allocate is collected as usual.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from app.engine import present, wire
from app.engine.derive import derive
from app.engine.evaluate import Decision, Result, Values, decide
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.model import RuleBase, RuleSet
from app.settings import Settings
from benchmarks.patients import random_patient
from benchmarks.peer import cohort
from benchmarks.peer.handwritten import CRITERIA, decide_peer
from benchmarks.peer.ruleset import load_peer

BLOCK = 500
WARMUP = 200
TARGETS_US = {"decide": 100.0, "answer dicts": 300.0, "answer bytes (API)": 300.0}
_RESULT = {True: Result.MET, False: Result.NOT_MET, None: Result.UNKNOWN}


@dataclass
class Case:
    label: str
    fn: Callable[[Any], object]
    inputs: Sequence[Any]
    samples: list[int] = field(default_factory=list)  # ns per call
    total_ns: int = 0  # block timings
    calls: int = 0

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    @property
    def p99_us(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1000

    @property
    def rate(self) -> float:
        return self.calls / (self.total_ns / 1e9)


def measure(cases: Sequence[Case], n: int, repeat: int) -> None:
    """Interleaved: per call (medians) and per block (patients/s), the order rotating."""
    k = len(cases)
    rotations = [[cases[(start + j) % k] for j in range(k)] for start in range(k)]
    for case in cases:  # warm caches (the answer dict's per-criterion parts, the plans)
        for x in case.inputs[:WARMUP]:
            case.fn(x)
    clock = time.perf_counter_ns
    for rep in range(repeat):
        for i in range(n):
            for case in rotations[(i + rep) % k]:
                x = case.inputs[i]
                fn = case.fn
                start = clock()
                fn(x)
                case.samples.append(clock() - start)
        for b, low in enumerate(range(0, n, BLOCK)):
            for case in rotations[(b + rep) % k]:
                part = case.inputs[low : low + BLOCK]
                fn = case.fn
                start = clock()
                for x in part:
                    fn(x)
                case.total_ns += clock() - start
                case.calls += len(part)


def report(cases: Sequence[Case], floor: Case) -> None:
    print(f"  {'':<58} {'median':>9} {'p99':>9} {'patients/s':>11}   x floor: median   rate")
    for case in cases:
        print(
            f"  {case.label:<58} {case.median_us:7.2f}us {case.p99_us:7.2f}us "
            f"{case.rate:11,.0f}   {case.median_us / floor.median_us:14.1f}x "
            f"{floor.rate / case.rate:5.1f}x"
        )


def agreement(raws: Sequence[dict[str, Any]], values: Sequence[Values], ruleset: RuleSet) -> int:
    """Patients on which Eligo and the floor differ (status or any criterion)."""
    differ = 0
    for raw, vals in zip(raws, values, strict=True):
        expected = decide_peer(raw)
        decision = decide(ruleset, vals)
        got = [decision.status.value, *(r.result for r in decision.criteria)]
        want = [expected["status"], *(_RESULT[expected[c]] for c in CRITERIA)]
        differ += got != want
    return differ


def peer_cases(
    rules: RuleBase, ruleset: RuleSet, raws: Sequence[dict[str, Any]], values: Sequence[Values]
) -> list[Case]:
    features = rules.features

    def normalise_decide(raw: dict[str, Any]) -> Decision:
        return decide(ruleset, normalise(raw, features))

    # Results typed `object`: only the work is measured, whatever present.decision returns.
    def normalise_decide_answer(raw: dict[str, Any]) -> object:
        return present.decision(decide(ruleset, normalise(raw, features)), rules)

    def with_derive(raw: dict[str, Any]) -> object:
        return present.decision(decide(ruleset, derive(normalise(raw, features), features)), rules)

    return [
        Case("hand-written function (the floor)", decide_peer, raws),
        Case("Eligo decide + trace (input already normalised)", partial(decide, ruleset), values),
        Case("normalise + decide", normalise_decide, raws),
        Case("normalise + decide + answer dict (present.decision)", normalise_decide_answer, raws),
        Case("  for context: normalise + derive + decide + answer dict", with_derive, raws),
    ]


def shipped_cases(rules: RuleBase, floor_inputs: Sequence[dict[str, Any]], m: int) -> list[Case]:
    rng = random.Random(42)
    values = [normalise(random_patient(rules, rng), rules.features) for _ in range(m)]
    every = list(rules.rulesets.values())

    def all_decide(vals: Values) -> list[Decision]:
        return [decide(r, vals) for r in every]

    def all_answers(vals: Values) -> list[object]:
        return [present.decision(decide(r, vals), rules) for r in every]

    def all_sent(vals: Values) -> bytes:
        """What the API does per answer: the decisions written as bytes (wire.py), rendered."""
        return present.render(wire.results([(decide(r, vals), None) for r in every], rules))

    n = len(every)
    return [
        Case("hand-written function, peer rule set (the floor)", decide_peer, floor_inputs[:m]),
        Case(f"one patient x all {n} shipped rule sets: decide + trace", all_decide, values),
        Case(f"one patient x all {n} shipped rule sets: + answer dicts", all_answers, values),
        Case(f"one patient x all {n} shipped rule sets: + answer bytes (API)", all_sent, values),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000, help="Peer cohort size")
    parser.add_argument("--repeat", type=int, default=5, help="Passes over the cohort")
    parser.add_argument(
        "--shipped-patients", type=int, default=2_000, help="Patients for all shipped rule sets"
    )
    parser.add_argument("--keep", type=Path, help="Folder for the cohort files (reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eligo-peer-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        lines, _ = cohort.write(args.patients, folder)
        raws = cohort.read_jsonl(lines)
    rules, ruleset = load_peer()
    values = [normalise(raw, rules.features) for raw in raws]
    differ = agreement(raws, values, ruleset)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; peer cohort of {len(raws):,} patients x {args.repeat} "
        f"passes, interleaved"
    )
    print(f"Eligo and the hand-written function differ on {differ} of {len(raws):,} patients")
    if differ:
        raise SystemExit("not comparing unlike things: fix the disagreement first")
    shipped = load_rules(Settings().rules_dir)
    m = min(args.shipped_patients, len(raws))
    peer = peer_cases(rules, ruleset, raws, values)
    every = shipped_cases(shipped, raws, m)
    gc.collect()
    gc.freeze()

    measure(peer, len(raws), args.repeat)
    print(f"peer rule set {ruleset.id} ({len(ruleset.deciding)} criteria), per patient:")
    report(peer, peer[0])

    measure(every, m, args.repeat)
    print(f"one patient x all shipped rule sets ({m:,} patients x {args.repeat} passes):")
    report(every, every[0])
    for case, (name, target) in zip(every[1:], TARGETS_US.items(), strict=True):
        verdict = "within" if case.median_us <= target else "OVER"
        print(f"  target {name}: median {case.median_us:.1f} us, {verdict} {target:.0f} us")


if __name__ == "__main__":
    main()
