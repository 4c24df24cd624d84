"""`eligo --version` and `--help` load the command line only: the engine, the server, the
database layer and the screening engines are imported inside the commands that use them
(app/cli/common.py). A structural guard on start-up time, not a timing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.one_pass

HEAVY = ("fastapi", "sqlalchemy", "duckdb", "pyarrow", "pyspark", "httpx")

# Run in a fresh interpreter: this test process has imported all of them already.
PROBE = """
import sys
import app.cli
sys.argv = ["eligo", *sys.argv[1:]]
if len(sys.argv) > 1:
    try:
        app.cli.main()
    except SystemExit:
        pass
print("loaded:", *(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args", [(), ("--version",), ("--help",), ("rules", "--help"), ("users", "--help")]
)
def test_the_command_line_starts_without_the_heavy_libraries(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = done.stderr.splitlines()[-1].split()[1:]
    assert loaded == [], f"`eligo {' '.join(args)}` imported {', '.join(loaded)}"
