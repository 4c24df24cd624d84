"""The READMEs' curl examples, copied and pasted as a newcomer does: each runs in bash from the
repository root against a real `eligo serve` run like the quick start (authentication off),
with only `localhost:8000` pointed at the test's port. curl fails on any HTTP error (a
.curlrc with `fail-with-body`), so an example out of date with the API fails here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.helpers import Server, eligo_process

pytestmark = pytest.mark.e2e
GUIDES = [ROOT / "README.md", ROOT / "docs" / "cds-hooks" / "README.md"]


def curl_examples(guide: Path) -> list[str]:
    """The indented code blocks of `guide` that call the quick start's service with curl and
    need nothing filled in by hand (no `<placeholder>`, no token from an earlier step)."""
    blocks = re.findall(r"(?:^ {4}\S.*\n(?: {4,}.*\n)*)", guide.read_text(), flags=re.MULTILINE)
    return [
        block
        for block in blocks
        if block.lstrip().startswith("curl")
        and "localhost:8000" in block
        and "<" not in block
        and "$" not in block
    ]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with eligo_process() as running:
        yield running


def run(example: str, server: Server, home: Path) -> str:
    (home / ".curlrc").write_text("fail-with-body\n")
    command = "set -o pipefail\n" + example.replace("localhost:8000", server.base[len("http://") :])
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CURL_HOME": str(home)},
        check=False,
    )
    assert done.returncode == 0, f"{example}\n{done.stdout[:2000]}\n{done.stderr}"
    return done.stdout


def test_the_guides_have_the_examples_checked_here() -> None:
    """So that a reworded example cannot silently drop out of the tests below."""
    found = {str(guide.relative_to(ROOT)): len(curl_examples(guide)) for guide in GUIDES}
    assert found == {"README.md": 2, "docs/cds-hooks/README.md": 1}, found


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(example, id=f"{guide.parent.name}-{number}")
        for guide in GUIDES
        for number, example in enumerate(curl_examples(guide))
    ],
)
def test_each_example_runs_against_the_quick_start(
    example: str, server: Server, tmp_path: Path
) -> None:
    output = run(example, server, tmp_path)
    if "head -c" not in example:
        json.loads(output)


def test_the_synthea_bundle_example_answers_as_the_readme_says(
    server: Server, tmp_path: Path
) -> None:
    (example,) = [e for e in curl_examples(GUIDES[0]) if "fhir+json" in e]
    answer = json.loads(run(example, server, tmp_path))
    assert {result["status"] for result in answer["results"]} == {"not_indicated"}
    titles = {reason["title"] for result in answer["results"] for reason in result["reasons"]}
    assert titles == {"Systemic sclerosis", "Systemic lupus erythematosus"}
    used = answer["fhir"]["used"]
    assert used["ssc_diagnosis"]["value"] is False
    assert used["ssc_diagnosis"]["resource"] == "no active, confirmed Condition in the record"
    assert {"age_years", "sex"} <= set(used)
    assert answer["fhir"]["skipped"]


def test_the_order_select_context_of_the_guide_is_read_as_it_says(server: Server) -> None:
    """The guide's draft order, with the sample's prefetch: accepted, and no card for the
    sample patient, as the guide says (the order changes none of her verdicts)."""
    guide = GUIDES[1].read_text()
    section = guide.split("## order-select", 1)[1]
    block = re.search(r'^ {4}"context": \{\n(?: {4,}.*\n)*', section, flags=re.MULTILINE)
    assert block is not None
    context = json.loads("{" + block.group(0) + "}")["context"]
    sample = json.loads((ROOT / "docs" / "cds-hooks" / "patient-view.json").read_text())
    assert context["patientId"] == sample["context"]["patientId"]
    body = {**sample, "hook": "order-select", "context": context}
    before = _cds_records(server)
    answer = httpx.post(f"{server.base}/cds-services/eligo-order-select", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cards": []}
    # Decided and recorded: the order was read as cyclophosphamide (any other selection is
    # answered without a decision or a record).
    assert _cds_records(server) == before + 1
    unselected = {**body, "context": {**context, "selections": ["MedicationRequest/other"]}}
    answer = httpx.post(
        f"{server.base}/cds-services/eligo-order-select", json=unselected, timeout=30
    )
    assert answer.json() == {"cards": []}
    assert _cds_records(server) == before + 1


def _cds_records(server: Server) -> int:
    page = httpx.get(f"{server.base}/v1/evaluations?channel=cds-hooks&limit=500", timeout=30)
    assert page.status_code == 200, page.text
    return len(page.json()["items"])
