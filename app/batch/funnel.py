"""Draw a screening's attrition funnel as a CONSORT-style flow diagram (standalone SVG).

A clinician reviewing a registry screening wants to see, at a glance, where patients leave and
how many stay in undecided: the main column carries the patients still in the funnel, each
deciding criterion's exclusions branch off to the right, and the end splits into eligible and
indeterminate. The input is one rule set's entry of the screening report (see `funnel_svg`).

Why it is written this way:
- Only the standard library and hand-written SVG: the picture must render the same as a file,
  inline in the clinician's HTML page and in a report, with no font metrics or drawing package.
  Text widths are estimated per character class from DejaVu Sans's glyph widths, rounded up
  (it is the widest common sans-serif), so wrapped lines stay inside their boxes in any of them.
- Styling is presentation attributes only (no `<style>`, no `style=`): the web form's
  Content-Security-Policy (`style-src 'self'`) would block inline styles when the SVG is
  inlined. No scripts, event handlers, external fonts or images either.
- Every text from the report (titles come from YAML rule files) is XML-escaped, and characters
  XML 1.0 cannot carry at all are replaced, so a hostile or odd title can neither inject markup
  nor make the document ill-formed.
- Colour is never the only signal: each box says in words whether it counts patients remaining,
  excluded, eligible or indeterminate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["funnel_svg", "rejected_reasons"]

# Geometry, in SVG user units (px). Two columns: the funnel itself and the side boxes.
_MARGIN = 20
_MAIN_X, _MAIN_W = _MARGIN, 300
_SIDE_X, _SIDE_W = _MAIN_X + _MAIN_W + 50, 340
_WIDTH = _SIDE_X + _SIDE_W + _MARGIN
_MAIN_CX, _SIDE_CX = _MAIN_X + _MAIN_W // 2, _SIDE_X + _SIDE_W // 2
_PAD = 9  # inside a box
_STEM = 18  # vertical line between a main box and a branch off it (or the next box)
_SIDE_GAP = 12  # between two side boxes

# Type sizes in px, and glyph widths in em by character class: DejaVu Sans's (the widest common
# sans-serif, the usual fallback on Linux) rounded up, so lines fit in Arial or Helvetica too.
_TITLE, _BODY, _SMALL = 16, 13, 11
_EM = {**dict.fromkeys("ijlI.,:;'!|", 0.30), " ": 0.33, **dict.fromkeys("frt()[]-/", 0.42)}
_EM |= dict.fromkeys("mwMW%@—", 1.0)
_EM_UPPER, _EM_OTHER, _BOLDER = 0.76, 0.64, 1.09

_INK, _MUTED, _LINE = "#1b1b1b", "#3a3a3a", "#444444"
_MAIN = ("#eef4fb", "#2b5d8a")  # fill, stroke
_EXCLUDED = ("#fdf0ee", "#a33a2b")
_QUIET = ("#f6f6f6", "#767676")
_ELIGIBLE = ("#e8f5ec", "#2e7d4a")
_INDETERMINATE = ("#fff6dc", "#8a6100")

# The rejected box names at most this many reasons (the rest are counted on one line), and cuts
# a reason (a registry column's name is the registry's, of any length) after this many
# characters, two or three lines: the full list is in the box's <title> and its <desc>.
_MOST_REASONS = 4
_REASON_CHARS = 60

# XML 1.0 cannot carry these even escaped; a title containing one would break the document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class _Step:
    criterion: str
    title: str
    kind: str
    excluded: int
    unknown: int
    remaining: int
    shared: str  # an included criterion's "applies to ..." (empty for the rule set's own)

    @property
    def quiet(self) -> bool:
        """Nobody left and nobody undecided here: listed compactly, without a box of its own."""
        return self.excluded == 0 and self.unknown == 0


@dataclass(frozen=True, slots=True)
class _Funnel:
    ident: str
    version: str
    title: str
    approved: bool
    review_status: str
    read: int | None  # rows read (None: a report from before issue 20 starts at screened)
    rejected: int  # rows rejected (no id, a duplicate id; strict mode: a bad cell)
    reasons: tuple[tuple[str, int], ...]  # why, with the rows (`rejected_reasons`)
    kept_unknown: int  # rows screened with a bad cell read as unknown
    screened: int
    steps: tuple[_Step, ...]
    eligible: int
    indeterminate: int
    to_confirm_only: int  # indeterminate patients who await only clinician confirmations


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    size: int = _BODY
    bold: bool = False
    fill: str = _INK
    indent: int = 0  # px from the box's text edge (a list item's wrapped lines)


@dataclass(frozen=True, slots=True)
class _Drawn:
    """SVG elements and the height they take, so callers can stack them top to bottom."""

    parts: list[str]
    height: int


def funnel_svg(report: Mapping[str, Any], rejected: Mapping[str, Any] | None = None) -> str:
    """The attrition funnel of one rule set's screening entry, as a standalone SVG document.

    `report` is `{"id", "version", "title", "review_status", "funnel": {"read", "rejected",
    "kept_unknown", "screened", "steps":
    [{"criterion", "title", "kind", "excluded", "unknown", "remaining", "origin"}, ...],
    "eligible", "indeterminate", "to_confirm_only"}}`; a step's `origin` (`{"applies_to": …}`,
    for a criterion included from a fragment), `to_confirm_only`, and the rows read, rejected
    and kept with a value unknown (then the funnel starts at the patients screened) may be
    left out. `rejected` is the whole report's `rejected` object (`{"count", "by_column"}`):
    with it, the rejected box names why (`rejected_reasons`). Raises ValueError naming the
    field when a count is missing or not a non-negative integer: a diagram with made-up
    numbers is worse than none.
    """
    funnel = _parse(report, rejected)
    prefix = _id_prefix(funnel)
    header = _header(funnel)
    body = _body(funnel, prefix, top=_MARGIN + header.height + 16)
    height = _MARGIN + header.height + 16 + body.height + _MARGIN
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}"'
            f' viewBox="0 0 {_WIDTH} {height}" role="img"'
            f' aria-labelledby="{prefix}-title {prefix}-desc" font-family="sans-serif">',
            f'<title id="{prefix}-title">{_esc(_label(funnel))}</title>',
            f'<desc id="{prefix}-desc">{_esc(_description(funnel))}</desc>',
            _defs(prefix),
            f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
            *header.parts,
            *body.parts,
            "</svg>",
            "",
        ]
    )


def _id_prefix(funnel: _Funnel) -> str:
    """A prefix for the document's ids (title, desc, arrow marker). Inlined in one HTML page,
    two diagrams must not share ids, or the second one's label would point at the first's text:
    the rule set id tells rule sets apart, a digest of the content two screenings of one."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "-", funnel.ident)[:40]
    digest = hashlib.sha256(_description(funnel).encode()).hexdigest()[:8]
    return f"funnel-{slug}-{digest}"


# --- reading the report ------------------------------------------------------------------------


def _parse(report: Mapping[str, Any], rejected: Mapping[str, Any] | None) -> _Funnel:
    funnel = report.get("funnel")
    if not isinstance(funnel, Mapping):
        raise ValueError("funnel: expected an object")
    steps = funnel.get("steps", [])
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise ValueError("funnel.steps: expected a list")
    status = _str(report.get("review_status")) or "draft"
    return _Funnel(
        ident=_str(report.get("id")),
        version=_str(report.get("version")),
        title=_str(report.get("title")) or _str(report.get("id")) or "Rule set",
        approved=status == "approved",
        review_status=status,
        read=_count(funnel, "read", "funnel") if "read" in funnel else None,
        rejected=_count(funnel, "rejected", "funnel") if "rejected" in funnel else 0,
        reasons=tuple(rejected_reasons(rejected)) if rejected is not None else (),
        kept_unknown=_count(funnel, "kept_unknown", "funnel") if "kept_unknown" in funnel else 0,
        screened=_count(funnel, "screened", "funnel"),
        steps=tuple(_step(step, f"funnel.steps[{i}]") for i, step in enumerate(steps)),
        eligible=_count(funnel, "eligible", "funnel"),
        indeterminate=_count(funnel, "indeterminate", "funnel"),
        to_confirm_only=_count(funnel, "to_confirm_only", "funnel")
        if "to_confirm_only" in funnel
        else 0,
    )


def _step(step: Any, where: str) -> _Step:
    if not isinstance(step, Mapping):
        raise ValueError(f"{where}: expected an object")
    criterion = _str(step.get("criterion"))
    origin = step.get("origin")
    return _Step(
        criterion=criterion,
        title=_str(step.get("title")) or criterion,
        kind=_str(step.get("kind")),
        excluded=_count(step, "excluded", where),
        unknown=_count(step, "unknown", where),
        remaining=_count(step, "remaining", where),
        shared=_str(origin.get("applies_to")) if isinstance(origin, Mapping) else "",
    )


def rejected_reasons(rejected: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Why rows were rejected, CONSORT's "reasons" beside its "excluded": (words, rows), from
    the report's `rejected` object (`{"count", "by_column": [{"column", "feature", "problem",
    "cells"}, ...]}`).

    A problem of the row's id (no feature) is one a row: "no id", "duplicate id". The cells'
    problems are reasons only under `strict` (otherwise they are merely other problems of rows
    rejected for their id; a report from before `strict` was recorded is taken as strict when
    the id's problems do not account for every rejected row): one
    reason per registry column, counting the rows of its most frequent feature (a column read
    as two features flags the same cell twice). A row can then have several reasons; rows no
    problem accounts for (a FHIR Bulk export's unreadable records) are "other". Raises
    ValueError naming the field when a count is not one."""
    count = _count(rejected, "count", "rejected")
    by_column = rejected.get("by_column") or []
    if not isinstance(by_column, Sequence) or isinstance(by_column, str):
        raise ValueError("rejected.by_column: expected a list")
    ids: dict[str, int] = {}
    cells: dict[str, dict[str, int]] = {}  # column -> feature -> cells
    for i, problem in enumerate(by_column):
        if not isinstance(problem, Mapping):
            raise ValueError(f"rejected.by_column[{i}]: expected an object")
        n = _count(problem, "cells", f"rejected.by_column[{i}]")
        column, feature = _str(problem.get("column")), _str(problem.get("feature"))
        if feature:
            per = cells.setdefault(column, {})
            per[feature] = per.get(feature, 0) + n
        else:
            said = _id_problem(_str(problem.get("problem")))
            ids[said] = ids.get(said, 0) + n
    reasons = _most_first(ids)
    strict = rejected.get("strict")
    if strict is True or (strict is None and sum(ids.values()) < count):  # None: an old report
        reasons += _most_first({f"a bad cell in {c}": max(f.values()) for c, f in cells.items()})
    other = count - sum(n for _, n in reasons)
    return [*reasons, ("other, see the rejected rows file", other)] if other > 0 else reasons


def _id_problem(problem: str) -> str:
    """A problem of the row's id (validate.py's words), as a reason."""
    if problem == "empty":
        return "no id"
    if problem.startswith("duplicate"):
        return "duplicate id"
    return f"id {problem}"


def _most_first(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _count(mapping: Mapping[str, Any], key: str, where: str) -> int:
    """A count, refused when it is not one (`True` is an int to Python, not to a clinician)."""
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    """Text from the report with whitespace runs (YAML folded titles) collapsed to one space."""
    return " ".join(str(value).split()) if value is not None else ""


def _esc(text: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", text))


# --- words -------------------------------------------------------------------------------------


def _num(n: int) -> str:
    return f"{n:,}"


def _label(funnel: _Funnel) -> str:
    return f"Screening funnel: {funnel.title} ({funnel.ident} version {funnel.version})"


def _review_line(funnel: _Funnel) -> str:
    line = "Draft rule set: needs local clinical review"
    if funnel.review_status != "draft":
        line += f" (review status: {funnel.review_status})"
    return line


def _leaving(step: _Step) -> tuple[str, str]:
    """How a step's exclusions are named: the count's label, and why they left.

    An indication not met means the therapy is not indicated, which is not the same finding as
    an ineligible patient, so it is worded differently."""
    if step.kind == "indication":
        return "Not indicated", f"Indication not met: {step.title}"
    if step.kind == "inclusion":
        return "Excluded", f"Inclusion not met: {step.title}"
    if step.kind == "exclusion":
        return "Excluded", f"Exclusion met: {step.title}"
    return "Excluded", f"Ruled out by: {step.title}"


def _shared(step: _Step) -> str:
    """Where an included criterion comes from: a reviewer reads it as the therapy's policy,
    not this protocol's own words."""
    return f"shared criterion, applies to {step.shared}"


def _awaiting(funnel: _Funnel) -> str:
    return f"{_num(funnel.to_confirm_only)} awaiting only a clinician's confirmation"


def _kept(funnel: _Funnel) -> str:
    rows = "row" if funnel.kept_unknown == 1 else "rows"
    return f"{_num(funnel.kept_unknown)} {rows} with a bad cell kept in, that value unknown"


def _cut(text: str, most: int = _REASON_CHARS) -> str:
    """`text` shortened to `most` characters, with an ellipsis when it was longer."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _reasons(funnel: _Funnel) -> str:
    """Every reason, in full: the description and the rejected box's <title> say them."""
    return "; ".join(f"{why} ({_num(n)})" for why, n in funnel.reasons)


def _description(funnel: _Funnel) -> str:
    """The whole funnel in sentences, for screen readers and anyone who cannot see the boxes."""
    words = [f"{_label(funnel)}."]
    if funnel.read is not None:
        why = f": {_reasons(funnel)}" if funnel.reasons else ""
        words.append(f"{_num(funnel.read)} rows read, {_num(funnel.rejected)} rejected{why}.")
        if funnel.kept_unknown:
            words.append(f"{_kept(funnel)}.")
    words.append(f"{_num(funnel.screened)} patients screened.")
    for number, step in enumerate(funnel.steps, start=1):
        label, why = _leaving(step)
        unknown = f", unknown for {_num(step.unknown)} (kept in)" if step.unknown else ""
        shared = f" ({_shared(step)})" if step.shared else ""
        words.append(
            f"Step {number}, {why[0].lower()}{why[1:]}{shared}: {_num(step.excluded)}"
            f" {label.lower()}{unknown}, {_num(step.remaining)} remaining."
        )
    awaiting = f", {_awaiting(funnel)}" if funnel.to_confirm_only else ""
    words.append(
        f"Result: {_num(funnel.eligible)} eligible, {_num(funnel.indeterminate)} indeterminate"
        f" (undecided: missing data{awaiting})."
    )
    if not funnel.approved:
        words.append(_review_line(funnel) + ".")
    return " ".join(words)


# --- drawing primitives ------------------------------------------------------------------------


def _measure(text: str, size: int, *, bold: bool = False) -> float:
    """Estimated rendered width in px: no font metrics, so per character class."""
    ems = sum(_EM.get(ch, _EM_UPPER if ch.isupper() else _EM_OTHER) for ch in text)
    return ems * size * (_BOLDER if bold else 1.0)


def _wrap(text: str, width: int, size: int = _BODY, *, bold: bool = False) -> list[str]:
    """Lines of `text` that fit `width` px, broken between words (inside a word only if the
    word alone is too wide, e.g. a long identifier)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if _measure(candidate, size, bold=bold) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        *whole, line = _chop(word, width, size, bold=bold)
        lines += whole
    return [*lines, line]


def _chop(word: str, width: int, size: int, *, bold: bool) -> list[str]:
    """A word cut into pieces that each fit `width` (just the word when it fits)."""
    pieces = [""]
    for ch in word:
        if pieces[-1] and _measure(pieces[-1] + ch, size, bold=bold) > width:
            pieces.append("")
        pieces[-1] += ch
    return pieces


def _lines(
    text: str, width: int, size: int = _BODY, *, bold: bool = False, fill: str = _INK
) -> list[_Line]:
    return [_Line(part, size, bold, fill) for part in _wrap(text, width, size, bold=bold)]


def _item(text: str, width: int) -> list[_Line]:
    """A list item: a bullet, and its wrapped lines hung under its first word, so that two
    items that each take two lines still read as two."""
    indent = round(_measure("\u2022 ", _BODY))
    lines = _wrap(text, width - indent)
    first = _Line(f"\u2022 {lines[0]}")
    return [first, *(_Line(line, indent=indent) for line in lines[1:])]


def _leading(line: _Line) -> int:
    return round(line.size * 1.35)


def _text(lines: Sequence[_Line], x: int, top: int, anchor: str = "start") -> list[str]:
    """One `<text>` per line; `top` is the top of the first line box."""
    parts, y = [], top
    for line in lines:
        y += _leading(line)
        weight = ' font-weight="bold"' if line.bold else ""
        parts.append(
            f'<text x="{x + line.indent}" y="{y - round(line.size * 0.35)}" font-size="{line.size}"'
            f' fill="{line.fill}" text-anchor="{anchor}"{weight}>{_esc(line.text)}</text>'
        )
    return parts


def _box(
    lines: Sequence[_Line],
    x: int,
    top: int,
    width: int,
    colours: tuple[str, str],
    *,
    height: int = 0,
    centred: bool = False,
    dashed: bool = False,
) -> _Drawn:
    """A rounded box around `lines`, at least `height` tall (to align boxes side by side)."""
    height = max(height, _box_height(lines))
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    rect = (
        f'<rect x="{x}" y="{top}" width="{width}" height="{height}" rx="4"'
        f' fill="{colours[0]}" stroke="{colours[1]}" stroke-width="1.5"{dash}/>'
    )
    inner = (height - _box_height(lines)) // 2
    if centred:
        text = _text(lines, x + width // 2, top + _PAD + inner, "middle")
    else:
        text = _text(lines, x + _PAD + 2, top + _PAD + inner)
    return _Drawn([rect, *text], height)


def _box_height(lines: Sequence[_Line]) -> int:
    return 2 * _PAD + sum(_leading(line) for line in lines) + 2


def _arrow(prefix: str, *points: tuple[int, int]) -> str:
    """A polyline through `points` with an arrowhead at the last one."""
    path = " ".join(f"{x},{y}" for x, y in points)
    return (
        f'<polyline points="{path}" fill="none" stroke="{_LINE}" stroke-width="1.5"'
        f' marker-end="url(#{prefix}-arrow)"/>'
    )


def _defs(prefix: str) -> str:
    return (
        f'<defs><marker id="{prefix}-arrow" viewBox="0 0 10 10" refX="10" refY="5"'
        ' markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{_LINE}"/></marker></defs>'
    )


# --- the diagram -------------------------------------------------------------------------------


def _header(funnel: _Funnel) -> _Drawn:
    width = _WIDTH - 2 * _MARGIN
    lines = _lines(funnel.title, width, _TITLE, bold=True)
    lines += _lines(f"{funnel.ident} · version {funnel.version}", width, _BODY, fill=_MUTED)
    drawn = _Drawn(_text(lines, _MARGIN, _MARGIN), sum(_leading(line) for line in lines))
    if funnel.approved:
        return drawn
    warning = _lines(_review_line(funnel), width - 2 * _PAD - 4, _BODY, bold=True)
    banner = _box(warning, _MARGIN, _MARGIN + drawn.height + 8, width, _INDETERMINATE)
    return _Drawn(drawn.parts + banner.parts, drawn.height + 8 + banner.height)


def _groups(steps: Sequence[_Step]) -> list[list[_Step]]:
    """Steps in reading order, with each run of quiet steps gathered into one group."""
    groups: list[list[_Step]] = []
    for step in steps:
        if step.quiet and groups and groups[-1][-1].quiet:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _main_box(lines: Sequence[_Line], top: int) -> _Drawn:
    return _box(lines, _MAIN_X, top, _MAIN_W, _MAIN, centred=True)


def _remaining(step: _Step, number: int, total: int) -> list[_Line]:
    return [
        _Line(f"Remaining: {_num(step.remaining)}", _BODY, bold=True),
        _Line(f"after step {number} of {total} ({step.kind or 'criterion'})", _SMALL, fill=_MUTED),
    ]


def _side(step: _Step, number: int) -> list[_Line]:
    label, why = _leaving(step)
    width = _SIDE_W - 2 * _PAD - 4
    lines = [_Line(f"{label}: {_num(step.excluded)}", _BODY, bold=True)]
    lines += _lines(f"{number}. {why}", width)
    if step.shared:
        lines += _lines(_shared(step), width, _SMALL, fill=_MUTED)
    if step.unknown:
        lines += _lines(f"unknown for {_num(step.unknown)}, kept in", width, _SMALL, fill=_MUTED)
    return lines


def _quiet(steps: Sequence[_Step], first: int) -> list[_Line]:
    """Criteria that changed nothing, one short line each: still listed for the reviewer."""
    width = _SIDE_W - 2 * _PAD - 4
    lines = [_Line("No one excluded, none unknown:", _SMALL, bold=True, fill=_MUTED)]
    for number, step in enumerate(steps, start=first):
        shared = f"; applies to {step.shared}" if step.shared else ""
        kind = step.kind or "criterion"
        lines += _lines(f"{number}. {step.title} ({kind}{shared})", width, _SMALL)
    return lines


@dataclass
class _Column:
    """The diagram as it is drawn, top to bottom.

    Side boxes may sit beside the main boxes (the right-hand column is free there), which
    keeps a long rule set's funnel about half as tall; only their arrows need the gap between
    two main boxes."""

    prefix: str
    last_bottom: int  # bottom of the last main box
    branch: int  # the lowest point where a side arrow leaves the vertical line
    side_bottom: int  # bottom of the last side box
    parts: list[str]

    def beside(
        self, lines: Sequence[_Line], colours: tuple[str, str], *, quiet: bool, title: str = ""
    ) -> None:
        """A side box joined to the vertical line below the current main box; `title`, when
        given, is its tooltip (the full text of what the box shortens)."""
        height = _box_height(lines)
        middle = max(
            self.last_bottom + _STEM,
            self.branch + _STEM,
            self.side_bottom + _SIDE_GAP + height // 2,
        )
        box = _box(lines, _SIDE_X, middle - height // 2, _SIDE_W, colours, dashed=quiet)
        if quiet:  # nobody leaves here: a plain dotted tie, not an arrow
            self.parts.append(
                f'<line x1="{_MAIN_CX}" y1="{middle}" x2="{_SIDE_X}" y2="{middle}"'
                f' stroke="{_QUIET[1]}" stroke-width="1.2" stroke-dasharray="2 3"/>'
            )
        else:
            self.parts.append(_arrow(self.prefix, (_MAIN_CX, middle), (_SIDE_X, middle)))
        if title:
            self.parts += ["<g>", f"<title>{_esc(title)}</title>", *box.parts, "</g>"]
        else:
            self.parts += box.parts
        self.branch, self.side_bottom = middle, middle - height // 2 + box.height

    def below(self, lines: Sequence[_Line]) -> None:
        """The next main box, with the vertical arrow from the one above."""
        top = max(self.branch, self.last_bottom) + _STEM
        self.parts.append(_arrow(self.prefix, (_MAIN_CX, self.last_bottom), (_MAIN_CX, top)))
        box = _main_box(lines, top)
        self.parts += box.parts
        self.last_bottom = top + box.height

    @property
    def bottom(self) -> int:
        return max(self.last_bottom, self.side_bottom)


def _rejected(funnel: _Funnel) -> list[_Line]:
    """The rows set aside before screening, as CONSORT sets aside those not assessed."""
    width = _SIDE_W - 2 * _PAD - 4
    lines = [_Line(f"Rows rejected: {_num(funnel.rejected)}", _BODY, bold=True)]
    if funnel.rejected and funnel.reasons:
        shown = funnel.reasons[:_MOST_REASONS]
        for why, n in shown:
            lines += _item(f"{_cut(why)} ({_num(n)})", width)
        if len(funnel.reasons) > len(shown):
            more = len(funnel.reasons) - len(shown)
            lines += _lines(f"and {more} more reasons", width, _SMALL)
        if sum(n for _, n in funnel.reasons) > funnel.rejected:
            lines += _lines("a row can have more than one reason", width, _SMALL, fill=_MUTED)
        lines += _lines("each row in rejected.csv", width, _SMALL, fill=_MUTED)
    else:
        said = "no id, an id another row has, or (strict) a bad cell; in rejected.csv"
        lines += _lines(said, width, _SMALL)
    return lines


def _start(funnel: _Funnel, prefix: str, top: int) -> _Column:
    """The top of the funnel: the rows read, the rows rejected beside them, then the patients
    screened (a report without the rows read starts at the patients screened)."""
    screened = [_Line(f"Screened: {_num(funnel.screened)} patients", bold=True)]
    if funnel.kept_unknown:  # kept, so said here, not beside the rows rejected
        said = f"{_num(funnel.kept_unknown)} with a bad cell read as unknown (problems.csv)"
        screened += _lines(said, _MAIN_W - 2 * _PAD, _SMALL, fill=_MUTED)
    if funnel.read is None:
        box = _main_box(screened, top)
        return _Column(prefix, top + box.height, top, top - _SIDE_GAP, box.parts)
    box = _main_box([_Line(f"Rows read: {_num(funnel.read)}", bold=True)], top)
    column = _Column(prefix, top + box.height, top, top - _SIDE_GAP, box.parts)
    quiet = not funnel.rejected
    title = f"Rows rejected: {_reasons(funnel)}" if funnel.reasons else ""
    column.beside(_rejected(funnel), _QUIET if quiet else _EXCLUDED, quiet=quiet, title=title)
    column.below(screened)
    return column


def _body(funnel: _Funnel, prefix: str, top: int) -> _Drawn:
    column = _start(funnel, prefix, top)
    number, total = 1, len(funnel.steps)
    for group in _groups(funnel.steps):
        if group[0].quiet:
            column.beside(_quiet(group, number), _QUIET, quiet=True)
        else:
            column.beside(_side(group[0], number), _EXCLUDED, quiet=False)
            column.below(_remaining(group[0], number, total))
        number += len(group)
    _outcomes(funnel, column)
    return _Drawn(column.parts, column.bottom - top)


def _outcomes(funnel: _Funnel, column: _Column) -> None:
    """Split the last box into eligible (straight down) and indeterminate (to the right)."""
    eligible = [
        _Line(f"Eligible: {_num(funnel.eligible)}", _BODY, bold=True),
        _Line("every deciding criterion known and passed", _SMALL, fill=_MUTED),
    ]
    indeterminate = [
        _Line(f"Indeterminate: {_num(funnel.indeterminate)}", _BODY, bold=True),
        _Line("undecided: missing data", _SMALL, fill=_MUTED),
    ]
    if funnel.to_confirm_only:
        indeterminate += _lines(_awaiting(funnel), _SIDE_W - 2 * _PAD - 4, _SMALL, fill=_MUTED)
    # The branch to the right runs below every side box, never through one.
    split = max(column.last_bottom + _STEM, column.branch + _STEM, column.side_bottom + _STEM)
    top = split + 22
    height = max(_box_height(eligible), _box_height(indeterminate))
    column.parts += [
        f'<line x1="{_MAIN_CX}" y1="{column.last_bottom}" x2="{_MAIN_CX}" y2="{split}"'
        f' stroke="{_LINE}" stroke-width="1.5"/>',
        _arrow(column.prefix, (_MAIN_CX, split), (_MAIN_CX, top)),
        _arrow(column.prefix, (_MAIN_CX, split), (_SIDE_CX, split), (_SIDE_CX, top)),
    ]
    column.parts += _box(
        eligible, _MAIN_X, top, _MAIN_W, _ELIGIBLE, height=height, centred=True
    ).parts
    column.parts += _box(
        indeterminate, _SIDE_X, top, _SIDE_W, _INDETERMINATE, height=height, centred=True
    ).parts
    column.last_bottom = column.side_bottom = top + height
