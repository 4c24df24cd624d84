"""Time `eligo synth`'s writers: the registry codings against the plain cohort, in one run.

    .venv/bin/python -m benchmarks.bench_synth [--n 1000000] [--seed 0]

Writes the same cohort as plain Parquet, plain CSV and registry-coded CSV (with its mapping)
to a temporary folder, each in a child process, and prints per writer the wall and CPU seconds
of that process, its peak resident memory, and the file's size; the ratio is the registry
CSV to the plain CSV, the floor it is measured against in the same run (CPU seconds are the
steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITERS = {
    "plain parquet": ("cohort.parquet", []),
    "plain csv": ("cohort.csv", []),
    "registry csv": ("registry.csv", ["--codings", "registry", "--mapping-out", "mapping.yaml"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    eligo = str(Path(sys.executable).with_name("eligo"))
    seconds: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, (name, extra) in WRITERS.items():
            options = [str(folder / o) if o.endswith(".yaml") else o for o in extra]
            command = [eligo, "synth", "--n", str(args.n), "--seed", str(args.seed)]
            seconds[label] = _run([*command, "--out", str(folder / name), *options], label)
            print(f"{'':16}file {(folder / name).stat().st_size / 1e6:,.0f} MB")
    (wall, cpu), (floor_wall, floor_cpu) = seconds["registry csv"], seconds["plain csv"]
    print(f"registry csv / plain csv: {wall / floor_wall:.2f} wall, {cpu / floor_cpu:.2f} CPU")


def _run(command: list[str], label: str) -> tuple[float, float]:
    """Run one writer; its own resource use, from wait4 (not the children's running max)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(
            f"{label}: {command} failed: {child.stderr.read().decode() if child.stderr else ''}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    print(f"{label:16}{wall:6.1f} s wall {cpu:6.1f} s CPU, peak {usage.ru_maxrss / 1024:,.0f} MB")
    return wall, cpu


if __name__ == "__main__":
    main()
