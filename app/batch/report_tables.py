"""The screening report's tables as CSV files (`results.tables/`), for a spreadsheet.

One file per table, one header row in words a spreadsheet user reads ("Not met", "Excluded
first"), the machine ids in columns of their own ("Protocol id", "Feature id") so the tables
join with each other and with the results' columns. Counts only, as the report: no patient id.
A pure function of the report dict (`tables`), like the HTML page; a table the report has no
data for (no `problems`, no `bounds`, no `overlap`) is not written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Table = tuple[list[str], list[list[Any]]]  # header, rows

STATUSES = ("eligible", "indeterminate", "ineligible", "not_indicated")
BOUNDS = ("best_case", "data_gaps_only", "confirmations_only", "gaps_and_confirmations")


def tables(report: Mapping[str, Any]) -> dict[str, Table]:
    """File stem -> table, in the order a reader takes them."""
    rulesets: Sequence[Mapping[str, Any]] = report["rulesets"]
    found: dict[str, Table] = {
        "protocols": _protocols(rulesets),
        "criteria": _criteria(rulesets),
        "funnels": _funnels(rulesets),
        "missing": _missing(report),
    }
    if (report.get("table1") or {}).get("rows"):
        found["table1"] = _table1(report["table1"])
    if report.get("problems"):
        found["problems_by_column"] = _problems(report["problems"])
    if any(r.get("bounds") for r in rulesets):
        found["unlock"] = _unlock(rulesets)
    if report.get("overlap"):
        found["overlap"] = _overlap(report["overlap"])
    return found


def _protocols(rulesets: Sequence[Mapping[str, Any]]) -> Table:
    header = ["Protocol id", "Protocol", "Therapy", "Indication", "Review status", "Screened"]
    header += ["Eligible", "Indeterminate", "Ineligible", "Not indicated"]
    header += [
        "Best case (eligible if every unknown were favourable)",
        "Indeterminate for data gaps only",
        "Indeterminate for confirmations only",
        "Indeterminate for both",
    ]
    rows = []
    for r in rulesets:
        counts, bounds = r["counts"], r.get("bounds") or {}
        rows.append(
            [r["id"], r["title"], r["therapy"], r["indication"], r["review_status"]]
            + [sum(counts.values())]
            + [counts.get(s, 0) for s in STATUSES]
            + [bounds.get(b) for b in BOUNDS]
        )
    return header, rows


def _criteria(rulesets: Sequence[Mapping[str, Any]]) -> Table:
    header = ["Protocol id", "Criterion id", "Criterion", "Kind", "Shared from"]
    header += ["Met", "Not met", "Unknown", "Excluded first"]
    rows = [
        [
            r["id"],
            c["id"],
            c["title"],
            c["kind"],
            (c.get("origin") or {}).get("label"),
            c["met"],
            c["not_met"],
            c["unknown"],
            c.get("excluded_first"),
        ]
        for r in rulesets
        for c in [*r["criteria"], *r["cautions"]]
    ]
    return header, rows


def _funnels(rulesets: Sequence[Mapping[str, Any]]) -> Table:
    """Per protocol, the funnel's boxes top to bottom: rows read, rejected and kept with a
    value made unknown (when the report has them), screened, each deciding criterion, then
    eligible and indeterminate."""
    header = ["Protocol id", "Step", "Criterion id", "Criterion", "Kind"]
    header += ["Excluded here", "Unknown (kept in)", "Patients"]
    rows: list[list[Any]] = []
    for r in rulesets:
        funnel = r["funnel"]
        for box in ("read", "rejected", "kept_unknown", "screened"):
            if box in funnel:
                rows.append([r["id"], box, None, None, None, None, None, funnel[box]])
        for i, step in enumerate(funnel["steps"], start=1):
            rows.append(
                [
                    r["id"],
                    i,
                    step["criterion"],
                    step["title"],
                    step["kind"],
                    step["excluded"],
                    step["unknown"],
                    step["remaining"],
                ]
            )
        for box in ("eligible", "indeterminate"):
            rows.append([r["id"], box, None, None, None, None, None, funnel[box]])
    return header, rows


def _missing(report: Mapping[str, Any]) -> Table:
    """What keeps patients indeterminate, over all protocols ("all") and per protocol."""
    header = ["Protocol id", "Feature id", "Value", "Kind", "Indeterminate patients"]
    scopes = [("all", report), *((r["id"], r) for r in report["rulesets"])]
    rows = [
        [scope, m["feature"], m["label"], kind, m["patients"]]
        for scope, entry in scopes
        for key, kind in (("missing", "to measure"), ("to_confirm", "to confirm"))
        for m in entry.get(key, [])
    ]
    return header, rows


def _table1(table: Mapping[str, Any]) -> Table:
    header = ["Characteristic", "Feature id", "Unit", "Value", "Patients", "% of known"]
    header += ["Median", "Q1", "Q3", "Known", "Missing"]
    rows: list[list[Any]] = []
    for row in table["rows"]:
        ident, label, unit = row["feature"], row["label"], row.get("unit")
        known, missing = row["known"], row["missing"]
        if row["type"] == "number":
            stats = [row.get("median"), row.get("q1"), row.get("q3")]
            rows.append([label, ident, unit, None, None, None, *stats, known, missing])
            continue
        for category in row.get("categories", []):
            n = category["patients"]
            share = round(100 * n / known, 1) if known else None
            rows.append(
                [label, ident, unit, category["value"], n, share, None, None, None, known, missing]
            )
    return header, rows


def _problems(problems: Mapping[str, Any]) -> Table:
    header = ["Registry column", "Feature id", "Problem", "Cells", "First at"]
    rows = [
        [p["column"], p["feature"], p["problem"], p["cells"], p["first"]]
        for p in problems.get("by_column", [])
    ]
    return header, rows


def _unlock(rulesets: Sequence[Mapping[str, Any]]) -> Table:
    header = ["Protocol id", "Feature id", "Value", "Kind", "Patients it alone would decide"]
    rows = [
        [r["id"], u["feature"], u["label"], u["kind"], u["patients"]]
        for r in rulesets
        for u in (r.get("bounds") or {}).get("unlock", [])
    ]
    return header, rows


def _overlap(overlaps: Sequence[Mapping[str, Any]]) -> Table:
    header = ["Therapy", "Indication", "Protocols", "Eligible", "Best case"]
    rows: list[list[Any]] = []
    for group in overlaps:
        known = {tuple(e["rulesets"]): e["patients"] for e in group.get("eligible", [])}
        best = {tuple(e["rulesets"]): e["patients"] for e in group.get("best_case", [])}
        for combo in [*known, *(c for c in best if c not in known)]:
            rows.append(
                [
                    group["therapy"],
                    group["indication"],
                    " & ".join(combo),
                    known.get(combo, 0),
                    best.get(combo, 0),
                ]
            )
    return header, rows
