"""Start-up: how long the command line takes before it does anything, and loading the rules
(issue 18's figures).

    .venv/bin/python -m benchmarks.bench_start [--runs 7] [--root DIR]

Each sample is a fresh process, so every import and every one-time cost (the UCUM registry,
YAML, pydantic models) is paid as a user pays it. The cases, run in turns so that the shared
machine's load falls on all of them alike:

  eligo --version                the parse of the command line and nothing else;
  eligo rules validate rules     load, check and hash the shipped rules, and their vignettes;
  import app.engine.load         in-process: what loading the rules needs imported;
  load_rules(rules)              in-process, timed around the call only, in a process that
                                 has done nothing else;
  load_rules(rules), 2nd call    the same in a process that has loaded them once: without
                                 the one-time costs (the UCUM parser and pint's registry);
  load_rules(rules), no cache    the first call with an empty cache of UCUM answers
                                 (XDG_CACHE_HOME, app/engine/unit_memo.py): what the first
                                 start after an install or a ucumvert/pint upgrade pays. The
                                 other cases use the cache as the first, untimed, run left it.

Each median is printed with its ratio to a floor measured in the same run: `python -c pass`
(same interpreter) for the commands, importing PyYAML for the import, and a plain
`yaml.safe_load` of the same rule files (PyYAML's pure-Python loader) for loading them.

The commands run the `eligo` entry point (`app.cli:main`, as the console script does) with
the working directory set to `--root` (default: this checkout): point it at a pristine copy
(`git archive HEAD | tar -x -C DIR`) to measure "before" on the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the `eligo` console script runs; `-c` keeps the working directory's `app` first.
LAUNCH = "import sys; sys.argv[0] = 'eligo'; from app.cli import main; sys.exit(main())"

IMPORT = """
import time
start = time.perf_counter()
import app.engine.load
print(time.perf_counter() - start)
"""

# argv: the rules directory, then how many calls (the last one is timed).
LOAD = """
import sys, time
from pathlib import Path
from app.engine.load import load_rules
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    load_rules(Path(sys.argv[1]))
print(time.perf_counter() - start)
"""

# The floors of the in-process cases: reading the same files with nothing on top.
YAML_FLOOR = "yaml.safe_load(rule files)"
YAML_FILES = "sorted([d / 'features.yaml', d / 'evidence.yaml', *d.glob('*/*.yaml')])"
YAML_IMPORT = """
import time
start = time.perf_counter()
import yaml
print(time.perf_counter() - start)
"""
YAML_LOAD = f"""
import sys, time
from pathlib import Path
import yaml
d = Path(sys.argv[1])
files = {YAML_FILES}
start = time.perf_counter()
for path in files:
    yaml.safe_load(path.read_text(encoding="utf-8"))
print(time.perf_counter() - start)
"""


@dataclass
class Case:
    label: str
    argv: list[str]
    timed_inside: bool  # the process prints its own figure (in-process cases)
    floor: str | None = None  # label of the case this one is compared with
    empty_cache: bool = False  # each sample with a new, empty XDG_CACHE_HOME
    samples: list[float] = field(default_factory=list)


def cases(root: Path) -> list[Case]:
    rules = str(root / "rules")
    python = sys.executable
    return [
        Case("python -c pass", [python, "-c", "pass"], timed_inside=False),
        Case("eligo --version", [python, "-c", LAUNCH, "--version"], False, "python -c pass"),
        Case(
            "eligo rules validate rules",
            [python, "-c", LAUNCH, "rules", "validate", rules],
            False,
            "python -c pass",
        ),
        Case("import yaml", [python, "-c", YAML_IMPORT], timed_inside=True),
        Case(YAML_FLOOR, [python, "-c", YAML_LOAD, rules], timed_inside=True),
        Case("import app.engine.load", [python, "-c", IMPORT], True, "import yaml"),
        Case("load_rules(rules)", [python, "-c", LOAD, rules, "1"], True, YAML_FLOOR),
        Case("load_rules(rules), 2nd call", [python, "-c", LOAD, rules, "2"], True, YAML_FLOOR),
        Case(
            "load_rules(rules), no cache",
            [python, "-c", LOAD, rules, "1"],
            True,
            YAML_FLOOR,
            empty_cache=True,
        ),
    ]


def sample(case: Case, root: Path) -> float:
    """Seconds: wall clock around the whole process, or the figure it printed."""
    with tempfile.TemporaryDirectory(prefix="eligo-bench-cache-") as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache} if case.empty_cache else None
        start = time.perf_counter()
        done = subprocess.run(
            case.argv, cwd=root, env=env, capture_output=True, text=True, check=False, timeout=300
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{case.label}: exit {done.returncode}\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1]) if case.timed_inside else elapsed


def report(measured: Sequence[Case]) -> None:
    medians = {c.label: statistics.median(c.samples) for c in measured}
    for case in measured:
        median = medians[case.label]
        spread = f"{min(case.samples):.3f}-{max(case.samples):.3f}"
        line = f"{case.label:<30} median {median:7.3f} s  (range {spread} s)"
        if case.floor:
            line += f"  {median / medians[case.floor]:6.1f} x {case.floor}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="Fresh processes per case")
    parser.add_argument("--root", type=Path, default=ROOT, help="Checkout to measure")
    args = parser.parse_args()
    root = args.root.resolve()
    measured = cases(root)
    for case in measured:  # once untimed: bytecode compiled, files in the page cache
        sample(case, root)
    for _ in range(args.runs):
        for case in measured:
            case.samples.append(sample(case, root))
    print(f"{root}: {args.runs} fresh processes per case, {sys.executable}")
    report(measured)


if __name__ == "__main__":
    main()
