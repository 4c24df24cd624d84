"""The screening report as a page people read: `results.report.html` beside the JSON.

A pure function of the report dict and the funnel SVGs (`report_html`), so the CLI and the
server's jobs write the same page, and a test renders any report without a screening.

Why it is written this way:
- One self-contained file: CSS inline, the funnels inline as SVG, no script, font, image or
  link outside it. An analyst mails it, opens it from a share or prints it; a hospital
  browser with no network shows it whole. The palette and type are the clinician form's
  (app/web/static/eligo.css), so it reads as the same product.
- Counts only, as the JSON: no patient id reaches it (the rejected rows are named by file:line
  or row number, the problems by registry column).
- Every text from the report (titles and labels from YAML, the registry's column names, the
  source's file name) is escaped here, once, by `_e`.
- Eleven protocols do not fit one table of detail: a summary table first (counts and
  bounds, one line per protocol, numbers right-aligned with thousands separators), then one
  section per protocol, reached from a list of contents. Wide tables scroll inside their own
  frame (focusable, for a keyboard) instead of widening the page.
- Sections that other parts of the screening add to the report (`problems`, per rule set
  `bounds`, `overlap`, `table1`) are drawn when present, so an older report still renders.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from app.batch.funnel import rejected_reasons
from app.engine.words import INDICATIONS, THERAPIES, counted

__all__ = ["CONTENT_SECURITY_POLICY", "report_html"]

TITLE = "Eligo screening report"
REJECTED_SHOWN = 20
# The statuses as the results, the JSON and `eligo screen` name them: an analyst matches the
# columns across the files.
STATUS_WORDS = {
    "eligible": "Eligible",
    "indeterminate": "Indeterminate",
    "ineligible": "Ineligible",
    "not_indicated": "Not indicated",
}
KIND_WORDS = {
    "indication": "Indication",
    "inclusion": "Inclusion",
    "exclusion": "Exclusion",
    "caution": "Caution",
}
REVIEW_WORDS = {
    "draft": "draft: needs local clinical review",
    "in_review": "in local clinical review",
    "approved": "approved locally",
}
UNLOCK_WORDS = {"missing": "value to measure", "to_confirm": "clinician confirmation"}

_CSS = """
:root { --ink: #1b1f24; --muted: #4a5360; --line: #b9c0ca; --tint: #f3f5f8; --accent: #0b4f9c;
  --ok: #1d6b35; --ok-bg: #e3f2e7; --warn: #7a4a00; --warn-bg: #fff1d6; --bad: #a4161a;
  --bad-bg: #fde4e4; --none: #4a5360; --none-bg: #eceff3;
  font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--ink); background: #fff; line-height: 1.45; }
body { margin: 0; }
header, main { max-width: 76rem; margin: 0 auto; padding: 0 1rem; }
header { border-bottom: 4px solid var(--accent); padding-top: 0.5rem; padding-bottom: 0.5rem; }
header p { margin: 0; font-weight: 700; }
a { color: var(--accent); }
h1 { margin: 1rem 0 0.5rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
h3 { margin-top: 1.5rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.meta dt { font-weight: 700; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.notice { background: var(--warn-bg); border-left: 6px solid var(--warn); padding: 0.75rem 1rem; }
.note { color: var(--muted); max-width: 60rem; }
.frame { overflow-x: auto; max-width: 100%; }
.frame:focus-visible { outline: 3px solid var(--ink); }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: 700; padding: 0.3rem 0; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid var(--line);
  padding: 0.3rem 0.6rem; }
thead th { border-bottom: 2px solid var(--ink); vertical-align: bottom; }
tbody th { font-weight: 400; }
.origin { display: block; color: var(--muted); font-size: 0.85rem; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n, .nowrap { white-space: nowrap; }
tbody th { min-width: 10rem; }
tbody tr:nth-child(even) { background: var(--tint); }
td .id, .id { color: var(--muted); font-size: 0.85rem; font-family: ui-monospace, monospace;
  overflow-wrap: break-word; }
.eligible { color: var(--ok); } .indeterminate { color: var(--warn); }
.ineligible { color: var(--bad); } .not_indicated { color: var(--none); }
nav ol { columns: 2 24rem; }
section.protocol { border-top: 4px solid var(--accent); margin-top: 2.5rem; }
.funnel svg { max-width: 100%; height: auto; }
.top { font-size: 0.9rem; }
@media print { .top { display: none; } section.protocol { break-before: page; }
  .frame { overflow: visible; } }
"""


# What a server sends the page with (GET /v1/screenings/{id}/report.html): nothing but its own
# one inline style sheet, by hash, so the page's text can never bring a script or a style in.
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode() + "'"
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {STYLE_HASH}; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def report_html(report: Mapping[str, Any], funnels: Mapping[str, str]) -> str:
    """The page for `report` (results.report.json's dict); `funnels`: rule set id -> its
    funnel SVG (funnel.funnel_svg), drawn in that rule set's section."""
    rulesets: Sequence[Mapping[str, Any]] = report["rulesets"]
    body = [
        _heading(report),
        _contents(rulesets, report),
        _rows(report),
        _protocols(rulesets),
        _overlap(report.get("overlap") or []),
        _table1(report.get("table1")),
        _undecided(report),
        _corrected(report.get("corrected") or []),
        *(_protocol(r, funnels.get(r["id"])) for r in rulesets),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{TITLE}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        '<header><p>Eligo <span class="id">therapy eligibility</span></p></header>\n'
        '<main id="top">\n'
        + "\n".join(part for part in body if part)
        + "\n</main>\n</body>\n</html>\n"
    )


# --- helpers ------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _n(value: Any) -> str:
    """A count with thousands separators; an empty cell for none."""
    return "" if value is None else f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def _num(value: float | None) -> str:
    """A median or quartile: whole numbers without decimals, others to one decimal."""
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _anchor(ruleset_id: str) -> str:
    return "rs-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in ruleset_id)


Cell = tuple[str, bool]  # (HTML, numeric: right-aligned)


def _table(
    caption: str, header: Sequence[Cell], rows: Iterable[Sequence[Cell]], *, label: str = ""
) -> str:
    """A table in a frame that scrolls by itself; the first cell of a row is its header."""
    head = "".join(f'<th scope="col"{_cls(n)}>{h}</th>' for h, n in header)
    lines = []
    for row in rows:
        first, *rest = row
        cells = "".join(f"<td{_cls(n)}>{c}</td>" for c, n in rest)
        lines.append(f'<tr><th scope="row"{_cls(first[1])}>{first[0]}</th>{cells}</tr>')
    name = _e(label or caption)
    return (
        f'<div class="frame" tabindex="0" role="region" aria-label="{name}">'
        f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def _cls(numeric: bool) -> str:
    return ' class="n"' if numeric else ""


def _t(text: str) -> Cell:
    return (text, False)


def _c(value: Any) -> Cell:
    return (_n(value), True)


def _section(ident: str, title: str, *parts: str) -> str:
    inner = "\n".join(p for p in parts if p)
    return (
        f'<section aria-labelledby="{ident}">\n<h2 id="{ident}">{title}</h2>\n{inner}\n</section>'
    )


# --- sections -----------------------------------------------------------------------------------


def _heading(report: Mapping[str, Any]) -> str:
    source = report.get("source") or {}
    drafts = [r for r in report["rulesets"] if r.get("review_status") != "approved"]
    review = (
        f'<p class="notice"><strong>Needs local clinical review:</strong> {len(drafts)} of '
        f"{len(report['rulesets'])} rule sets are drafts or in review. "
        f"{_e(report.get('review', ''))}</p>"
        if drafts
        else ""
    )
    return (
        "<h1>Screening report</h1>\n"
        '<dl class="meta">'
        f"<dt>Source</dt><dd>{_e(source.get('name', ''))} "
        f"(read with {_e(source.get('engine', ''))})</dd>"
        f'<dt>Rules</dt><dd><span class="id">{_e(report.get("rules_hash", ""))}</span></dd>'
        f"<dt>Rows</dt><dd>{_n(report['rows'])} read, {_n(report['rejected']['count'])} rejected, "
        f"{_n(report['screened'])} screened</dd>"
        f"<dt>Protocols</dt><dd>{len(report['rulesets'])}</dd></dl>\n"
        f"{review}\n"
        f"{_unread(report)}"
        '<p class="note">Counts only: this report names no patient. The results file, the '
        "rejected rows file and the problems file beside it carry the registry's ids.</p>"
    )


def _unread(report: Mapping[str, Any]) -> str:
    """A diagnosis the source does not give: said before any count it distorts."""
    return "".join(
        f'<p class="notice"><strong>Diagnosis not in the source:</strong> '
        f"{_e(unread['message'])}.</p>\n"
        for unread in report.get("indications_unread") or []
    )


def _contents(rulesets: Sequence[Mapping[str, Any]], report: Mapping[str, Any]) -> str:
    parts = [
        ("rows-title", "Rows read, rejected and why"),
        ("protocols-title", "Protocols: counts and bounds"),
        ("overlap-title", "Overlap between protocols") if report.get("overlap") else None,
        ("table1-title", "Table 1: the screened cohort")
        if (report.get("table1") or {}).get("rows")
        else None,
        ("undecided-title", "What keeps patients undecided"),
        ("corrected-title", "Corrected values") if report.get("corrected") else None,
    ]
    items = [f'<li><a href="#{i}">{t}</a></li>' for i, t in filter(None, parts)]
    protocols = "".join(
        f'<li><a href="#{_anchor(r["id"])}">{_e(r["title"])}</a></li>' for r in rulesets
    )
    return (
        '<nav aria-labelledby="contents-title"><h2 id="contents-title">Contents</h2>'
        f"<ul>{''.join(items)}</ul><p>Each protocol in detail (criteria and funnel):</p>"
        f"<ol>{protocols}</ol></nav>"
    )


def _rows(report: Mapping[str, Any]) -> str:
    rejected = report["rejected"]
    reasons = "; ".join(f"{_e(why)} ({_n(n)})" for why, n in rejected_reasons(rejected))
    facts = (
        f"<p>{_n(report['rows'])} rows read; {_n(rejected['count'])} rejected (kept out of every "
        f"count below, listed in the rejected rows file); {_n(report['screened'])} screened.</p>"
        + (f"<p>Rejected because: {reasons}.</p>" if reasons else "")
    )
    shown = rejected["first"][:REJECTED_SHOWN]
    more = rejected["count"] - len(shown)
    rows = [[_t(_e(r["where"])), _t(_e(r["problems"]))] for r in shown]
    first = (
        _table(
            "Rejected rows"
            + (f" (the first {len(shown)}; {_n(more)} more in the file)" if more else ""),
            [_t("Where"), _t("Problems")],
            rows,
        )
        if rows
        else ""
    )
    return _section("rows-title", "Rows read, rejected and why", facts, _problems(report), first)


def _problems(report: Mapping[str, Any]) -> str:
    problems = report.get("problems")
    if not problems or not problems["cells"]:  # none (always so under strict): nothing to say
        return ""
    were = "was" if problems["cells"] == 1 else "were"
    text = (
        f"<p>{counted(problems['cells'], 'cell')} in {counted(problems['rows'], 'row')} could "
        f"not be read and {were} taken as unknown (the patient stays in; an unknown never makes "
        "anyone eligible).</p>"
    )
    rows = [
        [
            _t(_e(p["column"])),
            _t(f'<span class="id">{_e(p["feature"])}</span>'),
            _t(_e(p["problem"])),
            _c(p["cells"]),
            _t(_e(p["first"])),
        ]
        for p in problems.get("by_column", [])
    ]
    header = [_t("Registry column"), _t("Feature"), _t("Problem"), ("Cells", True), _t("First at")]
    return text + (
        _table("Cells read as unknown, by registry column", header, rows) if rows else ""
    )


def _protocols(rulesets: Sequence[Mapping[str, Any]]) -> str:
    header: list[Cell] = [_t("Protocol"), _t("Therapy")]
    header += [(STATUS_WORDS[s], True) for s in STATUS_WORDS]
    rows = [
        [
            _t(
                f'<a href="#{_anchor(r["id"])}">{_e(r["title"])}</a>'
                f'<br><span class="id">{_e(r["id"])}</span>'
            ),
            _t(f'<span class="nowrap">{_e(_therapy(r))}</span>'),
            *(_c(r["counts"].get(s, 0)) for s in STATUS_WORDS),
        ]
        for r in rulesets
    ]
    table = _table("Patients per protocol and status", header, rows)
    return _section("protocols-title", "Protocols: counts and bounds", table, _bounds(rulesets))


def _bounds(rulesets: Sequence[Mapping[str, Any]]) -> str:
    """Eligible now and at best, in a table of its own: beside the four counts its columns
    squeezed the protocols' titles into a column a word wide."""
    if not any(r.get("bounds") for r in rulesets):
        return ""
    header: list[Cell] = [
        _t("Protocol"),
        ("Eligible now", True),
        ("Best case", True),
        ("Undecided: data gaps only", True),
        ("confirmations only", True),
        ("both", True),
        _t("The value that alone decides most of them"),
    ]
    rows = []
    for r in rulesets:
        bounds = r.get("bounds") or {}
        keys = ("eligible", "best_case", "data_gaps_only", "confirmations_only")
        first = (bounds.get("unlock") or [None])[0]
        unlock = f"{_e(first['label'])} ({_n(first['patients'])})" if first else ""
        rows.append(
            [
                _t(f'<a href="#{_anchor(r["id"])}" class="id">{_e(r["id"])}</a>'),
                *(_c(bounds.get(k)) for k in keys),
                _c(bounds.get("gaps_and_confirmations")),
                _t(unlock),
            ]
        )
    note = (
        '<p class="note"><strong>Best case</strong>: eligible if every unknown item were '
        "favourable (eligible now, plus the undecided); the undecided split by what they "
        "await: values to measure (data gaps), clinician confirmations, or both.</p>"
    )
    return note + _table("Eligible now and at best, per protocol", header, rows)


def _therapy(ruleset: Mapping[str, Any]) -> str:
    therapy = THERAPIES.get(ruleset.get("therapy", ""), ruleset.get("therapy", ""))
    indication = INDICATIONS.get(ruleset.get("indication", ""), ruleset.get("indication", ""))
    return f"{therapy} in {indication}"


def _overlap(overlaps: Sequence[Mapping[str, Any]]) -> str:
    if not overlaps:
        return ""
    parts = [
        '<p class="note">Patients eligible for several protocols of one therapy and '
        "indication: each line counts the patients eligible for the protocols it names, now "
        "and at best (if every unknown item were favourable).</p>"
    ]
    for group in overlaps:
        best = {tuple(b["rulesets"]): b["patients"] for b in group.get("best_case", [])}
        combos = [tuple(e["rulesets"]) for e in group.get("eligible", [])]
        combos += [c for c in best if c not in combos]
        known = {tuple(e["rulesets"]): e["patients"] for e in group.get("eligible", [])}
        rows = [[_t(_e(" ∩ ".join(c))), _c(known.get(c, 0)), _c(best.get(c, 0))] for c in combos]
        caption = _e(_therapy(group) + ": " + ", ".join(group.get("rulesets", [])))
        header = [_t("Protocols"), ("Eligible", True), ("Best case", True)]
        parts.append(_table(caption, header, rows))
    return _section("overlap-title", "Overlap between protocols", *parts)


def _table1(table: Mapping[str, Any] | None) -> str:
    if not table or not table.get("rows"):
        return ""
    screened = table["screened"]
    rows: list[list[Cell]] = []
    for row in table["rows"]:
        rows += _characteristic(row)
    header = [_t("Characteristic"), ("Value", True), ("Known", True), ("Missing", True)]
    note = (
        f'<p class="note">The {_n(screened)} patients screened (rejected rows are not in '
        "them), from the values as screened: after units and missing-value codes. Numbers: "
        "median (interquartile range); yes/no and categories: patients (% of those known).</p>"
    )
    body = _table(f"Characteristics of the {_n(screened)} patients screened", header, rows)
    return _section("table1-title", "Table 1: the screened cohort", note, body)


def _characteristic(row: Mapping[str, Any]) -> list[list[Cell]]:
    label = _e(row["label"]) + (f" ({_e(row['unit'])})" if row.get("unit") else "")
    known, missing = row["known"], row["missing"]
    if row["type"] == "number":
        value = f"{_num(row.get('median'))} ({_num(row.get('q1'))}–{_num(row.get('q3'))})"
        return [[_t(label), (value if known else "–", True), _c(known), _c(missing)]]
    categories = row.get("categories", [])
    if row["type"] == "boolean":
        yes = next((c["patients"] for c in categories if c["value"] == "yes"), 0)
        return [[_t(label + ": yes"), (_share(yes, known), True), _c(known), _c(missing)]]
    lines = [[_t(label), _t(""), _c(known), _c(missing)]]
    for c in categories:
        name = "&nbsp;&nbsp;" + _e(str(c["value"]).replace("_", " "))
        lines.append([_t(name), (_share(c["patients"], known), True), _t(""), _t("")])
    return lines


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({_pct(part, whole)} %)"


def _undecided(report: Mapping[str, Any]) -> str:
    measure = [
        [_t(_e(m["label"])), _t(f'<span class="id">{_e(m["feature"])}</span>'), _c(m["patients"])]
        for m in report.get("missing", [])
    ]
    confirm = [
        [
            _t(_e(c.get("question") or c["label"])),
            _t(f'<span class="id">{_e(c["feature"])}</span>'),
            _c(c["patients"]),
        ]
        for c in report.get("to_confirm", [])
    ]
    header = [_t("Value"), _t("Feature"), ("Undecided patients", True)]
    parts = [
        '<p class="note">Over all protocols: patients undecided somewhere for want of each '
        "value; measuring or confirming the first lines decides the most patients.</p>",
        _table("Values to measure, missing most", header, measure) if measure else "",
        _table(
            "Clinician confirmations most awaited",
            [_t("Question"), _t("Feature"), ("Undecided patients", True)],
            confirm,
        )
        if confirm
        else "",
    ]
    if not measure and not confirm:
        parts.append("<p>No patient is undecided for want of a value.</p>")
    return _section("undecided-title", "What keeps patients undecided", *parts)


def _corrected(corrected: Sequence[Mapping[str, Any]]) -> str:
    if not corrected:
        return ""
    rows = [[_t(_e(c["label"])), _c(c["rows"]), _t(_e(c["summary"]))] for c in corrected]
    table = _table(
        "Values given that the catalogue's derivations replaced",
        [_t("Value"), ("Rows", True), _t("What was done")],
        rows,
    )
    return _section("corrected-title", "Corrected values", table)


# --- one protocol -------------------------------------------------------------------------------


def _protocol(ruleset: Mapping[str, Any], svg: str | None) -> str:
    anchor = _anchor(ruleset["id"])
    counts = ruleset["counts"]
    total = sum(counts.values())
    statuses = "; ".join(
        f'<span class="{s}">{STATUS_WORDS[s]}: {_n(counts.get(s, 0))}</span>' for s in STATUS_WORDS
    )
    status = str(ruleset.get("review_status", ""))
    parts = [
        f'<section class="protocol" aria-labelledby="{anchor}">',
        f'<h2 id="{anchor}">{_e(ruleset["title"])}</h2>',
        f'<p><span class="id">{_e(ruleset["id"])} version {_e(ruleset.get("version", ""))}</span>'
        f" · {_e(_therapy(ruleset))} · {_e(REVIEW_WORDS.get(status, status))}</p>",
        f"<p>{_n(total)} patients screened: {statuses}.</p>",
        _unlock(ruleset),
        _criteria(ruleset),
        _awaited(ruleset),
        _funnel(svg),
        '<p class="top"><a href="#top">Back to the top</a></p>',
        "</section>",
    ]
    return "\n".join(p for p in parts if p)


def _unlock(ruleset: Mapping[str, Any]) -> str:
    bounds = ruleset.get("bounds")
    if not bounds:
        return ""
    text = (
        f"<p>Eligible now: {_n(bounds['eligible'])}; best case {_n(bounds['best_case'])} "
        f"(undecided for data gaps only {_n(bounds['data_gaps_only'])}, for confirmations "
        f"only {_n(bounds['confirmations_only'])}, for both "
        f"{_n(bounds['gaps_and_confirmations'])}).</p>"
    )
    rows = [
        [_t(_e(u["label"])), _t(UNLOCK_WORDS.get(u["kind"], _e(u["kind"]))), _c(u["patients"])]
        for u in bounds.get("unlock", [])
    ]
    header = [_t("Value"), _t("Kind"), ("Patients it alone would decide", True)]
    title = f"The values that unlock most patients ({_e(ruleset['id'])})"
    return text + (_table(title, header, rows) if rows else "")


def _criteria(ruleset: Mapping[str, Any]) -> str:
    header = [
        _t("Criterion"),
        _t("Kind"),
        ("Met", True),
        ("Not met", True),
        ("Unknown", True),
        ("Excluded first", True),
    ]

    def row(c: Mapping[str, Any]) -> list[Cell]:
        origin = c.get("origin")
        shared = f'<span class="origin">{_e(origin["label"])}</span>' if origin else ""
        return [
            _t(f"{_e(c['title'])}{shared}"),
            _t(KIND_WORDS.get(c["kind"], _e(c["kind"]))),
            _c(c["met"]),
            _c(c["not_met"]),
            _c(c["unknown"]),
            _c(c.get("excluded_first")),
        ]

    every = [*ruleset.get("criteria", []), *ruleset.get("cautions", [])]
    title = f"Criteria of {_e(ruleset['id'])}: patients who meet each"
    return _table(title, header, [row(c) for c in every])


def _awaited(ruleset: Mapping[str, Any]) -> str:
    def listed(
        entries: Sequence[Mapping[str, Any]], words: Callable[[Mapping[str, Any]], str]
    ) -> str:
        return "; ".join(f"{_e(words(e))} ({_n(e['patients'])})" for e in entries)

    parts = []
    if ruleset.get("missing"):
        parts.append(
            "<p>Values to measure, missing most: "
            f"{listed(ruleset['missing'], lambda e: e['label'])}.</p>"
        )
    if ruleset.get("to_confirm"):
        parts.append(
            f"<p>Confirmations awaited: {listed(ruleset['to_confirm'], lambda e: e['label'])}; "
            f"{_n(ruleset.get('to_confirm_only', 0))} patients await nothing but confirmations.</p>"
        )
    return "\n".join(parts)


def _funnel(svg: str | None) -> str:
    if not svg:
        return ""
    return f'<h3>Funnel</h3>\n<div class="funnel">{svg}</div>'
