"""The file of UCUM answers (app/engine/unit_memo.py): what a load asked ucumvert and pint is
answered from it by the next process, exactly as they would answer, and a file that is
damaged, stale or cannot be written changes nothing but the time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.engine import unit_memo, units
from app.engine.load import check_rules, load_rules
from app.engine.model import RuleBase
from app.engine.units import UnitError, converter, validate_unit
from app.engine.vignettes import load_vignettes
from tests.conftest import GOLDEN_RULES, ROOT, SHIPPED_RULES

pytestmark = pytest.mark.one_pass

CASES = ROOT / "tests" / "golden" / "diagnostics"
MG_PER_DL_IN_UMOL_PER_L = 0.0113120  # creatinine, 113.12 g/mol


@pytest.fixture
def memo(tmp_path: Path) -> Iterator[Path]:
    """A new, empty file of answers (and in-process caches that do not answer for it)."""
    path = tmp_path / "cache" / "eligo" / "units.json"
    unit_memo.use(path)
    _forget_in_process()
    yield path
    unit_memo.use(unit_memo.default_path())


def _forget_in_process() -> None:
    units._parse.cache_clear()
    units._conversion.cache_clear()
    units._remembered_here.cache_clear()


def _fresh_process(path: Path) -> None:
    """What a new process sees: nothing in memory, only the file."""
    unit_memo.use(path)
    _forget_in_process()


def _computed() -> int:
    """How many units and conversions were worked out by ucumvert and pint since forgotten."""
    return units._parse.cache_info().currsize + units._conversion.cache_info().currsize


def _stored(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _golden_with(tmp_path: Path, case: Path | None = None) -> Path:
    rules = tmp_path / "rules"
    (rules / "therapies").mkdir(parents=True)
    for name in ("features.yaml", "evidence.yaml"):
        shutil.copy(GOLDEN_RULES / name, rules / name)
    if case is not None:
        shutil.copy(case, rules / "therapies" / case.name)
    return rules


def _with_psi(rules: Path) -> Path:
    """`rules` with a unit the shipped catalogue does not have: PaO2 in [psi] too."""
    features = rules / "features.yaml"
    text = features.read_text(encoding="utf-8")
    features.write_text(text.replace("[kPa]", '[kPa, "[psi]"]'), encoding="utf-8")
    return rules


def test_a_miss_is_computed_and_written(memo: Path) -> None:
    assert not memo.exists()
    base = load_rules(SHIPPED_RULES)
    assert _computed() > 0
    stored = _stored(memo)
    assert set(stored["units"]) == _catalogue_units(base)
    assert all(verdict is None for verdict in stored["units"].values())
    creatinine = ["umol/L", "mg/dL", 113.12, [MG_PER_DL_IN_UMOL_PER_L, 0.0]]
    assert creatinine in stored["conversions"]


def _catalogue_units(base: RuleBase) -> set[str]:
    """The units load validates (annotation-only ones, {score}, need no parser)."""
    every = {u for f in base.features.values() for u in [f.unit, *f.spec.other_units] if u}
    return {u for u in every if not units._ANNOTATION_ONLY.match(u)}


def test_a_hit_computes_nothing(memo: Path) -> None:
    """The second process neither parses a unit nor converts one: everything it asks is in
    the file, and the answers are the same."""
    first = load_rules(SHIPPED_RULES)
    written = memo.read_bytes()
    _fresh_process(memo)
    second = load_rules(SHIPPED_RULES)
    assert _computed() == 0
    assert second.hash == first.hash
    assert converter("umol/L", "mg/dL", 113.12) == units.Linear(MG_PER_DL_IN_UMOL_PER_L, 0.0)
    assert converter("kPa", "mm[Hg]").scale == pytest.approx(7.50061683)
    assert _computed() == 0  # the catalogue's other units were worked out at load
    assert memo.read_bytes() == written  # nothing new: not rewritten


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            "catalogue",
            [
                "features.yaml:8:",
                "'mmHg]' is not a valid UCUM unit (",
                "'mg/dL/' is not a valid UCUM unit (",
            ],
        ),
        ("thresholds", ["'kPaa' is not a valid UCUM unit (", "'mg' is not convertible to '%'"]),
    ],
)
def test_a_hit_reports_the_same_diagnostics(
    memo: Path, tmp_path: Path, broken: str, expected: list[str]
) -> None:
    """Invalid units in a rule file: the same messages at the same file:line:col, whether
    ucumvert is asked or the file answers."""
    if broken == "thresholds":
        rules = _golden_with(tmp_path, CASES / "types-and-units.yaml")
    else:
        rules = _golden_with(tmp_path)
        features = rules / "features.yaml"
        text = features.read_text(encoding="utf-8").replace("[kPa]", '[kPa, "mmHg]"]')
        features.write_text(text.replace('["umol/L"]', '["umol/L", "mg/dL/"]'), encoding="utf-8")
    _, cold = check_rules(rules)
    _fresh_process(memo)
    _, warm = check_rules(rules)
    assert _computed() == 0
    assert [str(d) for d in warm] == [str(d) for d in cold]
    shown = "\n".join(str(d) for d in cold)
    assert all(part in shown for part in expected), shown


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b'{"key": {',  # cut short
        b"\xff\xfe not utf-8",
        b"[]",
        b'{"key": null, "units": {}, "conversions": []}',
    ],
    ids=["empty", "truncated", "binary", "not-an-object", "no-key"],
)
def test_a_damaged_file_is_ignored_and_rewritten(memo: Path, damage: bytes) -> None:
    memo.parent.mkdir(parents=True)
    memo.write_bytes(damage)
    base = load_rules(SHIPPED_RULES)
    assert _computed() > 0
    assert set(_stored(memo)["units"]) == _catalogue_units(base)
    assert base.hash == load_rules(SHIPPED_RULES).hash


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("units", "mg/dL"), 1),  # a verdict is null or a message
        (("conversions", 0, 3), ["1", 0]),  # a factor is a number
        (("conversions", 0, 2), "113"),  # a molar mass is a number
        (("conversions", 0), ["mg", "g"]),  # four fields
    ],
)
def test_an_answer_of_the_wrong_shape_discards_the_file(
    memo: Path, where: tuple[str | int, ...], value: object
) -> None:
    load_rules(SHIPPED_RULES)
    data = _stored(memo)
    node: Any = data
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    memo.write_text(json.dumps(data), encoding="utf-8")
    _fresh_process(memo)
    load_rules(SHIPPED_RULES)
    assert _computed() > 0
    assert _stored(memo)["units"]["mg/dL"] is None


@pytest.mark.parametrize("field", ["pint", "ucumvert", "lark", "units.py", "format"])
def test_answers_of_other_versions_are_not_used(memo: Path, field: str) -> None:
    """A file written under another ucumvert, pint, lark or units.py is stale: a wrong answer
    planted in it must not come back, and the file is rewritten with the current key."""
    load_rules(SHIPPED_RULES)
    data = _stored(memo)
    current = data["key"]
    data["key"] = {**current, field: "0.0-other"}
    memo.write_text(json.dumps(_planted(data)), encoding="utf-8")
    _fresh_process(memo)
    assert converter("kPa", "mm[Hg]").scale == pytest.approx(7.50061683)
    load_rules(SHIPPED_RULES)
    assert _stored(memo)["key"] == current


def test_a_planted_answer_with_the_current_key_is_used(memo: Path) -> None:
    """The counterpart of the test above: the file really answers (so the stale test shows
    the key at work, not a file that is never read)."""
    load_rules(SHIPPED_RULES)
    memo.write_text(json.dumps(_planted(_stored(memo))), encoding="utf-8")
    _fresh_process(memo)
    assert converter("kPa", "mm[Hg]").scale == 2.0


def _planted(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with a wrong answer: kPa to mm[Hg] doubles."""
    kpa = [
        [s, t, m, [2.0, 0.0]] for s, t, m, _ in data["conversions"] if (s, t) == ("kPa", "mm[Hg]")
    ]
    assert kpa, "the shipped catalogue offers kPa for mm[Hg]"
    rest = [entry for entry in data["conversions"] if entry[:2] != ["kPa", "mm[Hg]"]]
    return {**data, "conversions": rest + kpa}


def test_an_unwritable_place_changes_nothing_but_the_time(tmp_path: Path) -> None:
    """A read-only home in a container: the load computes, as without the file, silently."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    _fresh_process(blocker / "eligo" / "units.json")
    try:
        base = load_rules(SHIPPED_RULES)
        assert converter("umol/L", "mg/dL", 113.12).scale == pytest.approx(MG_PER_DL_IN_UMOL_PER_L)
        again = load_rules(SHIPPED_RULES)  # answered from memory, no second attempt to fail
    finally:
        unit_memo.use(unit_memo.default_path())
    assert again.hash == base.hash
    assert blocker.read_text(encoding="utf-8") == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_changes_nothing_but_the_time(memo: Path) -> None:
    memo.parent.mkdir(parents=True)
    memo.parent.chmod(0o500)
    try:
        load_rules(SHIPPED_RULES)
    finally:
        memo.parent.chmod(0o700)
    assert list(memo.parent.iterdir()) == []  # no file, no temporary file left behind


def test_a_requests_units_are_not_written(memo: Path, tmp_path: Path) -> None:
    """Only a load's answers are kept: what clients send is theirs, and unbounded."""
    load_rules(SHIPPED_RULES)
    assert converter("mmol/L", "mg/dL", 113.12).scale == pytest.approx(11.312)
    with pytest.raises(UnitError, match="not a valid UCUM unit"):
        validate_unit("[ft_i]/wk]")
    load_rules(_with_psi(_golden_with(tmp_path)))  # asks something new: the file is rewritten
    stored = _stored(memo)
    assert "[psi]" in stored["units"]
    assert "[ft_i]/wk]" not in stored["units"]
    assert all(entry[:3] != ["mmol/L", "mg/dL", 113.12] for entry in stored["conversions"])


def test_a_load_records_what_a_request_asked_first(memo: Path) -> None:
    """A conversion a request made before the load is still what the load needs next time:
    the in-process cache must not hide it from the file."""
    assert converter("kPa", "mm[Hg]").scale == pytest.approx(7.50061683)
    load_rules(SHIPPED_RULES)
    assert ["kPa", "mm[Hg]", None] in [entry[:3] for entry in _stored(memo)["conversions"]]


def test_a_file_grown_too_large_keeps_the_latest_load(
    memo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    load_rules(_with_psi(_golden_with(tmp_path)))
    golden = set(_stored(memo)["units"])
    assert "[psi]" in golden
    monkeypatch.setattr(unit_memo, "MAX_ANSWERS", len(golden) + 1)
    base = load_rules(SHIPPED_RULES)
    assert set(_stored(memo)["units"]) == _catalogue_units(base)  # without [psi]


def test_every_remembered_answer_is_the_one_ucumvert_gives(memo: Path) -> None:
    """Differential: every unit and conversion the shipped rules, their catalogue and their
    vignettes ask for, read back from the file, equals what ucumvert and pint compute now."""
    base = load_rules(SHIPPED_RULES)
    load_vignettes(SHIPPED_RULES / "tests", base)
    _fresh_process(memo)
    stored = unit_memo._answers()
    _assert_covers_the_catalogue(base, stored)
    for name, verdict in stored.units.items():
        assert verdict == units._problem(name), name
    for key, answer in stored.conversions.items():
        fresh = units._conversion(key)
        assert answer == fresh, key
        if isinstance(fresh, str):
            with pytest.raises(UnitError) as remembered:
                converter(*key)
            assert str(remembered.value) == fresh
        else:
            assert converter(*key) == units.Linear(*fresh), key


def _assert_covers_the_catalogue(base: RuleBase, stored: unit_memo._Answers) -> None:
    assert set(stored.units) == _catalogue_units(base)
    for feature in base.features.values():
        for other in feature.spec.other_units:
            assert (other, feature.unit, feature.spec.molar_mass) in stored.conversions, other
    thresholds = [c for c in stored.conversions if c[:2] == ("umol/L", "mg/dL")]
    assert thresholds, "a threshold written in umol/L (serum creatinine)"


PROBE = """
import sys
from pathlib import Path
from app.engine.load import load_rules
base = load_rules(Path(sys.argv[1]))
print(base.hash, *sorted(m for m in ("pint", "lark", "ucumvert") if m in sys.modules))
"""


def test_a_second_process_builds_neither_parser_nor_registry(tmp_path: Path) -> None:
    """What issue 18 is about, end to end: the file is found by XDG_CACHE_HOME, and the next
    process loads the rules without importing pint, lark or ucumvert."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def load() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(SHIPPED_RULES)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.split()

    first, second = load(), load()
    assert first[1:] == ["lark", "pint", "ucumvert"]
    assert second == first[:1]
    assert (tmp_path / "eligo" / "units.json").is_file()
