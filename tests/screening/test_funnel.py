"""The attrition funnel as SVG: well-formed, complete in words, escaped, and drawn for a look.

`test_renders_the_astis_example` writes test-artifacts/funnel/astis.svg (git-ignored) so the
layout can be checked by eye, e.g. `rsvg-convert -o astis.png astis.svg` or a headless browser.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from app.batch.funnel import funnel_svg, rejected_reasons
from app.batch.validate import DUPLICATE

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "funnel"


def _step(criterion: str, title: str, kind: str, *counts: int) -> dict[str, Any]:
    """A funnel step; `counts` are excluded, unknown and remaining."""
    excluded, unknown, remaining = counts
    return {
        "criterion": criterion,
        "title": title,
        "kind": kind,
        "excluded": excluded,
        "unknown": unknown,
        "remaining": remaining,
    }


def _report(steps: list[dict[str, Any]], screened: int, eligible: int) -> dict[str, Any]:
    last = steps[-1]["remaining"] if steps else screened
    return {
        "id": "hsct-ssc-astis",
        "version": "1.0.0",
        "title": "Autologous HSCT for diffuse cutaneous systemic sclerosis (ASTIS criteria)",
        "review_status": "draft",
        "funnel": {
            "screened": screened,
            "steps": steps,
            "eligible": eligible,
            "indeterminate": last - eligible,
        },
    }


def astis() -> dict[str, Any]:
    """The shipped ASTIS rule set's deciding criteria, with counts that add up."""
    rows = [
        ("ssc-diagnosis", "Systemic sclerosis", "indication", 420, 3),
        ("diffuse-cutaneous", "Diffuse cutaneous SSc", "inclusion", 300, 40),
        ("age-18-to-65", "Age 18 to 65 years", "inclusion", 31, 0),
        ("disease-duration-4-years", "Disease duration 4 years or less", "inclusion", 92, 17),
        (
            "skin-and-organ-involvement",
            "mRSS above 14 with at least one vital internal organ involved",
            "inclusion",
            54,
            61,
        ),
        ("dlco-below-40", "DLCO below 40 % predicted", "exclusion", 12, 100),
        ("pao2-below-8-kpa", "PaO2 below 8 kPa (60 mmHg)", "exclusion", 0, 0),
        ("mpap-above-50", "Mean pulmonary artery pressure above 50 mmHg", "exclusion", 0, 0),
        ("lvef-below-45", "LVEF below 45 %", "exclusion", 2, 9),
        (
            "creatinine-clearance-below-40",
            "Creatinine clearance below 40 mL/min",
            "exclusion",
            0,
            0,
        ),
        (
            "prior-cyclophosphamide",
            "Prior cyclophosphamide above 5 g IV cumulative, or above 3 months oral",
            "exclusion",
            4,
            0,
        ),
        (
            "uncontrolled-arrhythmia-or-hypertension",
            "Uncontrolled arrhythmia or uncontrolled hypertension",
            "exclusion",
            0,
            0,
        ),
        (
            "pericardial-contraindication",
            "Septal bounce, constrictive pericarditis or tamponade on cardiac MRI",
            "exclusion",
            1,
            58,
        ),
    ]
    remaining, steps = 1000, []
    for criterion, title, kind, excluded, unknown in rows:
        remaining -= excluded
        steps.append(_step(criterion, title, kind, excluded, unknown, remaining))
    return _report(steps, screened=1000, eligible=20)


def _parse(svg: str) -> ET.Element:
    # Our own output, parsed to prove it well-formed; it has no DTD or entities to expand.
    return ET.fromstring(svg)  # noqa: S314


def _texts(root: ET.Element) -> list[str]:
    """The visible text lines, top to bottom as drawn (document order)."""
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def _visible(root: ET.Element) -> str:
    return " ".join(_texts(root))


def _in_order(haystack: str, needles: list[str]) -> bool:
    at = 0
    for needle in needles:
        found = haystack.find(needle, at)
        if found < 0:
            return False
        at = found + len(needle)
    return True


def test_is_a_standalone_svg_sized_to_its_content() -> None:
    svg = funnel_svg(astis())
    root = _parse(svg)
    assert root.tag == f"{SVG}svg"
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    assert 0 < width < 2000
    assert 0 < height < 4000
    ys = [float(t.attrib["y"]) for t in root.iter(f"{SVG}text")]
    assert max(ys) < height
    assert root.attrib["font-family"] == "sans-serif"


def test_is_accessible() -> None:
    root = _parse(funnel_svg(astis()))
    assert root.attrib["role"] == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert root.attrib["aria-labelledby"].split() == [title.attrib["id"], desc.attrib["id"]]
    assert "hsct-ssc-astis" in (title.text or "")
    words = desc.text or ""
    assert _in_order(
        words,
        [
            "1,000 patients screened.",
            "Step 1, indication not met: Systemic sclerosis: 420 not indicated,"
            " unknown for 3 (kept in), 580 remaining.",
            "Step 2, inclusion not met: Diffuse cutaneous SSc: 300 excluded",
            "Step 6, exclusion met: DLCO below 40 % predicted: 12 excluded",
            "Result: 20 eligible, 64 indeterminate",
            "Draft rule set",
        ],
    )


def test_every_step_is_listed_in_order_with_its_counts() -> None:
    report = astis()
    text = _visible(_parse(funnel_svg(report)))
    needles = ["Screened: 1,000 patients"]
    for number, step in enumerate(report["funnel"]["steps"], start=1):
        if step["excluded"] or step["unknown"]:
            needles.append(f": {step['excluded']:,}")
        needles.append(f"{number}. ")
        needles.append(step["title"])
        if step["unknown"]:
            needles.append(f"unknown for {step['unknown']:,}, kept in")
        if step["excluded"] or step["unknown"]:
            needles.append(f"Remaining: {step['remaining']:,}")
    needles += ["Eligible: 20", "Indeterminate: 64", "undecided: missing data"]
    assert _in_order(text, needles), text


def test_exclusions_are_worded_by_kind() -> None:
    text = _visible(_parse(funnel_svg(astis())))
    assert "Not indicated: 420" in text
    assert "Indication not met: Systemic sclerosis" in text
    assert "Excluded: 300" in text
    assert "Inclusion not met: Diffuse cutaneous SSc" in text
    assert "Exclusion met: DLCO below 40 % predicted" in text
    assert "unknown for 40, kept in" in text
    assert "unknown for 100, kept in" in text
    # A step with nobody unknown says nothing about unknowns.
    assert "unknown for 0" not in text


def test_an_included_criterion_says_where_it_comes_from() -> None:
    """A fragment's criterion (`origin` in the report) reads as the therapy's shared policy,
    in its side box, in the compact list of quiet steps and in the description."""
    report = astis()
    shared = {"fragment": "cellular-therapy-general", "applies_to": "all cellular therapies"}
    steps = report["funnel"]["steps"]
    steps.append({**_step("pregnancy", "Pregnancy", "exclusion", 0, 0, 0), "origin": shared})
    steps.insert(6, {**_step("active-malignancy", "Active malignancy", "exclusion", 0, 0, 0)})
    steps[6]["origin"] = shared
    steps[5]["origin"] = shared  # dlco-below-40: excluded 12, a box of its own
    for i in range(6, len(steps)):
        steps[i]["remaining"] = steps[i - 1]["remaining"] - steps[i]["excluded"]
    root = _parse(funnel_svg(report))
    text = _visible(root)
    assert _in_order(
        text,
        ["6. Exclusion met: DLCO below 40 % predicted", "shared criterion, applies to all"],
    )
    assert "Active malignancy (exclusion; applies to all cellular therapies)" in text
    assert "Pregnancy (exclusion; applies to all cellular therapies)" in text
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert (
        "Step 6, exclusion met: DLCO below 40 % predicted (shared criterion, applies to all"
        " cellular therapies): 12 excluded" in (desc.text or "")
    )


def test_patients_awaiting_only_a_confirmation_are_counted_apart() -> None:
    report = astis()
    report["funnel"]["to_confirm_only"] = 1234
    root = _parse(funnel_svg(report))
    assert _in_order(
        _visible(root),
        ["Indeterminate: 64", "undecided: missing data", "1,234 awaiting only a clinician's"],
    )
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert "(undecided: missing data, 1,234 awaiting only a clinician's confirmation)" in (
        desc.text or ""
    )
    assert "awaiting only" not in funnel_svg(astis())  # none: nothing said


def test_quiet_steps_are_listed_compactly() -> None:
    root = _parse(funnel_svg(astis()))
    text = _visible(root)
    for title in ["PaO2 below 8 kPa (60 mmHg)", "LVEF below 45 %", "Uncontrolled arrhythmia"]:
        assert title in text
    # No box of their own: 13 steps, 4 quiet, so 9 "Remaining" boxes.
    assert text.count("Remaining:") == 9
    assert "No one excluded, none unknown:" in text


def test_side_arrows_point_right_and_have_markers() -> None:
    root = _parse(funnel_svg(astis()))
    marker = root.find(f"{SVG}defs/{SVG}marker")
    assert marker is not None
    arrows = [p for p in root.iter(f"{SVG}polyline") if "marker-end" in p.attrib]
    assert arrows
    assert all(p.attrib["marker-end"] == f"url(#{marker.attrib['id']})" for p in arrows)
    sideways = []
    for arrow in arrows:
        (x1, y1), (x2, y2) = (
            tuple(map(float, pt.split(","))) for pt in arrow.attrib["points"].split()[-2:]
        )
        assert (x2 >= x1 and y1 == y2) or (x1 == x2 and y2 > y1)
        if y1 == y2:
            sideways.append(arrow)
    assert len(sideways) == 9


def test_draft_line_only_unless_approved() -> None:
    draft = astis()
    assert "Draft rule set: needs local clinical review" in _visible(_parse(funnel_svg(draft)))
    approved = copy.deepcopy(draft)
    approved["review_status"] = "approved"
    root = _parse(funnel_svg(approved))
    assert "Draft" not in _visible(root)
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert "Draft" not in (desc.text or "")
    missing = copy.deepcopy(draft)
    del missing["review_status"]
    assert "needs local clinical review" in _visible(_parse(funnel_svg(missing)))


def test_text_from_the_report_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & "quotes" \x07'
    report = _report(
        [_step("x", hostile, "inclusion", 1, 0, 9)],
        screened=10,
        eligible=9,
    )
    report["title"] = "Rule <b>set</b> & co"
    report["id"] = 'evil" onload="alert(1)'
    svg = funnel_svg(report)
    root = _parse(svg)
    assert not any(el.tag.endswith("script") for el in root.iter())
    assert not any(name.startswith("on") for el in root.iter() for name in el.attrib)
    text = _visible(root)
    assert '<script>alert("x")</script> & "quotes" \ufffd' in text
    assert "Rule <b>set</b> & co" in text
    assert "<script>" not in svg
    assert "<b>" not in svg


def test_only_an_indication_or_no_steps_at_all() -> None:
    only_indication = _report(
        [_step("ssc-diagnosis", "Systemic sclerosis", "indication", 5, 2, 15)],
        screened=20,
        eligible=13,
    )
    text = _visible(_parse(funnel_svg(only_indication)))
    assert _in_order(
        text,
        ["Screened: 20", "Not indicated: 5", "Remaining: 15", "Eligible: 13", "Indeterminate: 2"],
    )
    no_steps = _report([], screened=7, eligible=7)
    text = _visible(_parse(funnel_svg(no_steps)))
    assert _in_order(text, ["Screened: 7", "Eligible: 7", "Indeterminate: 0"])
    assert "Remaining" not in text


def test_large_numbers_get_thousands_separators() -> None:
    report = _report(
        [_step("ssc-diagnosis", "Systemic sclerosis", "indication", 1_234_567, 0, 8_765_433)],
        screened=10_000_000,
        eligible=1_000_000,
    )
    text = _visible(_parse(funnel_svg(report)))
    for shown in ["10,000,000", "1,234,567", "8,765,433", "1,000,000", "7,765,433"]:
        assert shown in text


def test_long_titles_are_wrapped_inside_the_boxes() -> None:
    long_title = " ".join(["Extraordinarily long criterion title"] * 8)
    report = _report([_step("long", long_title, "exclusion", 3, 1, 7)], screened=10, eligible=6)
    texts = _texts(_parse(funnel_svg(report)))
    lines = texts[texts.index("Excluded: 3") + 1 : texts.index("unknown for 1, kept in")]
    assert len(lines) > 3
    assert all(len(line) <= 50 for line in lines)
    assert " ".join(lines) == f"1. Exclusion met: {long_title}"


def test_a_word_too_long_for_a_box_is_cut() -> None:
    word = "x" * 200
    report = _report([_step("long", word, "inclusion", 3, 0, 7)], screened=10, eligible=6)
    texts = _texts(_parse(funnel_svg(report)))
    pieces = [line for line in texts if "xxx" in line]
    assert len(pieces) > 2
    assert "".join(pieces).endswith(word)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("funnel", "screened"), -1),
        (("funnel", "eligible"), "20"),
        (("funnel", "indeterminate"), True),
    ],
)
def test_bad_counts_are_refused_by_name(path: tuple[str, str], value: Any) -> None:
    report = astis()
    report[path[0]][path[1]] = value
    with pytest.raises(ValueError, match=f"funnel.{path[1]}"):
        funnel_svg(report)


def test_bad_step_count_names_the_step() -> None:
    report = astis()
    del report["funnel"]["steps"][2]["remaining"]
    with pytest.raises(ValueError, match=r"funnel\.steps\[2\]\.remaining"):
        funnel_svg(report)


def test_ids_differ_between_diagrams_that_may_share_a_page() -> None:
    def ids(report: dict[str, Any]) -> set[str]:
        return {el.attrib["id"] for el in _parse(funnel_svg(report)).iter() if "id" in el.attrib}

    first, other_screening = astis(), astis()
    other_screening["funnel"]["eligible"] = 19
    other_screening["funnel"]["indeterminate"] = 65
    other_ruleset = astis()
    other_ruleset["id"] = "hsct-ssc-scot"
    assert not ids(first) & ids(other_screening)
    assert not ids(first) & ids(other_ruleset)


def test_is_deterministic() -> None:
    assert funnel_svg(astis()) == funnel_svg(astis())


def test_renders_the_astis_example() -> None:
    """Writes the realistic example for a visual check (see the module docstring)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "astis.svg"
    path.write_text(funnel_svg(astis()), encoding="utf-8")
    assert _parse(path.read_text(encoding="utf-8")).tag == f"{SVG}svg"


def test_the_funnel_starts_at_the_rows_read_with_the_rejected_beside_them() -> None:
    """Issue 20: CONSORT starts at the records read. A report that gives them (every report
    since) draws "Rows read", the rows rejected beside it and the rows kept with a value read
    as unknown, then the patients screened; the description says the same in words. One
    without them (a stored report from before) still starts at the patients screened."""
    report = _report([], screened=18, eligible=5)
    before = funnel_svg(report)
    assert "Rows read" not in before
    report["funnel"] |= {"read": 20, "rejected": 2, "kept_unknown": 1}
    svg = funnel_svg(report)
    texts = _texts(_parse(svg))
    assert texts.index("Rows read: 20") < texts.index("Rows rejected: 2")
    assert texts.index("Rows rejected: 2") < texts.index("Screened: 18 patients")
    # the row kept with a bad cell is said in the screened box, not beside the rejected rows
    kept = next(t for t in texts if "with a bad cell read as unknown" in t)
    assert texts.index(kept) == texts.index("Screened: 18 patients") + 1
    assert kept.startswith("1 with a bad cell")
    desc = _parse(svg).find("{http://www.w3.org/2000/svg}desc")
    assert desc is not None
    assert desc.text is not None
    assert "20 rows read, 2 rejected. 1 row with a bad cell kept in, that value unknown." in (
        desc.text
    )
    report["funnel"]["rejected"] = -1
    with pytest.raises(ValueError, match=r"funnel\.rejected"):
        funnel_svg(report)


def _problem(column: str, feature: str, problem: str, cells: int) -> dict[str, Any]:
    return {"column": column, "feature": feature, "problem": problem, "cells": cells,
            "first": "registry.csv:2"}  # fmt: skip


def _rejected_box(svg: str) -> list[str]:
    """The rejected box's lines, from its count to the patients screened below it."""
    texts = _texts(_parse(svg))
    start = texts.index(next(t for t in texts if t.startswith("Rows rejected")))
    return texts[start : texts.index(next(t for t in texts if t.startswith("Screened")))]


def _with_rows(rejected: int, kept_unknown: int = 0) -> dict[str, Any]:
    report = _report([], screened=18, eligible=5)
    report["funnel"] |= {"read": 18 + rejected, "rejected": rejected, "kept_unknown": kept_unknown}
    return report


def test_the_rejected_box_names_why_with_counts() -> None:
    """Issue 20: CONSORT names the reasons beside the count. The id given twice is the
    reason, not the bad cell one of those rows also has (only `strict` rejects for a cell,
    and then the id's reasons do not cover every row)."""
    rejected = {
        "count": 3,
        "by_column": [
            _problem("PAT_ID", "", DUPLICATE, 2),
            _problem("PAT_ID", "", "empty", 1),
            _problem("LVEF", "lvef_percent", "not a number", 1),
        ],
    }
    svg = funnel_svg(_with_rows(3, kept_unknown=1), rejected)
    box = _rejected_box(svg)
    assert box[:3] == ["Rows rejected: 3", "\u2022 duplicate id (2)", "\u2022 no id (1)"]
    assert not any("LVEF" in line for line in box)
    root = _parse(svg)
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert "21 rows read, 3 rejected: duplicate id (2); no id (1)." in (desc.text or "")
    tooltips = [t.text for g in root.iter(f"{SVG}g") for t in g.iter(f"{SVG}title")]
    assert tooltips == ["Rows rejected: duplicate id (2); no id (1)"]
    # Without the report's `rejected` (a caller that has only a rule set's entry): as before.
    assert "duplicate id" not in funnel_svg(_with_rows(3, kept_unknown=1))


def test_strict_names_each_column_with_a_bad_cell() -> None:
    """Under `strict` a bad cell rejects its row: one reason per registry column, its rows
    counted once though the column gives two features; a row can have several reasons."""
    rejected = {
        "count": 5,
        "by_column": [
            _problem("LVEF", "lvef_percent", "not a number", 2),
            _problem("DX", "ssc_diagnosis", "not yes/no", 2),
            _problem("DX", "sle_diagnosis", "not yes/no", 2),
            _problem("PAT_ID", "", "empty", 1),
            _problem("LVEF", "lvef_percent", "outside 5 to 90", 1),
        ],
    }
    assert rejected_reasons(rejected) == [
        ("no id", 1),
        ("a bad cell in LVEF", 3),
        ("a bad cell in DX", 2),
    ]
    box = _rejected_box(funnel_svg(_with_rows(5), rejected))
    assert box[1:5] == [
        "\u2022 no id (1)",
        "\u2022 a bad cell in LVEF (3)",
        "\u2022 a bad cell in DX (2)",
        "a row can have more than one reason",
    ]


def test_the_reports_strict_flag_decides_whether_a_bad_cell_is_a_reason() -> None:
    """A report says whether it was strict; only reports from before it said are inferred."""
    problems = [_problem("R", "", "duplicate id", 2), _problem("LVEF", "lvef_percent", "x", 1)]
    # not strict: the bad cell was read as unknown; the third row is another kind (FHIR)
    assert rejected_reasons({"count": 3, "strict": False, "by_column": problems}) == [
        ("duplicate id", 2),
        ("other, see the rejected rows file", 1),
    ]
    # strict, with the bad cell in a row also rejected for its id: still a reason
    assert rejected_reasons({"count": 2, "strict": True, "by_column": problems}) == [
        ("duplicate id", 2),
        ("a bad cell in LVEF", 1),
    ]
    # an older report without the flag: strict inferred when the ids leave rows unexplained
    assert rejected_reasons({"count": 3, "by_column": problems})[1] == ("a bad cell in LVEF", 1)


def test_rows_no_problem_accounts_for_are_other() -> None:
    """A FHIR Bulk export's unreadable records are rejected without a column's problem."""
    assert rejected_reasons({"count": 3, "by_column": []}) == [
        ("other, see the rejected rows file", 3)
    ]
    assert rejected_reasons({"count": 0, "by_column": []}) == []
    box = _rejected_box(funnel_svg(_with_rows(0), {"count": 0, "by_column": []}))
    assert box[1].startswith("no id, an id another row has")  # none rejected: what would be


def test_many_long_hostile_reasons_stay_inside_the_box_and_escaped() -> None:
    """Registry column names are the registry's: cut in the box (the full list in its
    <title>), at most four reasons drawn, every text escaped and within the box's width."""
    hostile = '<script>alert("x")</script>&' + "W" * 80
    problems = [_problem(f"COL{i}", f"f{i}", "not a number", 10 - i) for i in range(6)]
    problems.insert(0, _problem(hostile, "lvef_percent", "not a number", 20))
    rejected = {"count": 25, "by_column": problems}
    svg = funnel_svg(_with_rows(25), rejected)
    assert "<script>" not in svg
    root = _parse(svg)
    box = _rejected_box(svg)
    assert len([line for line in box if line.startswith("\u2022 ")]) == 4
    assert " ".join(box[1:3]).startswith('\u2022 a bad cell in <script>alert("x")</script>&WWW')
    assert "\u2026 (20)" in " ".join(box)
    assert "W" * 60 not in "".join(box)
    assert "and 3 more reasons" in box
    # A reason's wrapped lines hang under its first word, right of the bullet.
    texts = list(root.iter(f"{SVG}text"))
    first = next(t for t in texts if (t.text or "").startswith("\u2022 a bad cell in"))
    second = texts[texts.index(first) + 1]
    assert (second.text or "").startswith("<script>")
    assert float(second.attrib["x"]) > float(first.attrib["x"])
    tooltip = next(t.text or "" for g in root.iter(f"{SVG}g") for t in g.iter(f"{SVG}title"))
    assert f"a bad cell in {hostile} (20)" in tooltip
    assert "a bad cell in COL5 (5)" in tooltip
    # Wrapped to the side column's width (as a long criterion title is), two lines at most.
    assert all(len(line) <= 50 for line in box)
    assert len([line for line in box if "W" in line]) <= 2


def test_bad_reason_counts_are_refused_by_name() -> None:
    bad = {"count": 2, "by_column": [_problem("PAT_ID", "", "empty", -1)]}
    with pytest.raises(ValueError, match=r"rejected\.by_column\[0\]\.cells"):
        funnel_svg(_with_rows(2), bad)
    with pytest.raises(ValueError, match=r"rejected\.count"):
        funnel_svg(_with_rows(2), {"by_column": []})
