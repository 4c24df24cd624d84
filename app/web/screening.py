"""What the registry screening pages show, built from the rule sets and the API's job view:
pure, so the templates stay dumb and the wording is tested here.

The pages show the same job the API shows (`app.services.screenings.view`): a state, a count or
a link here is never something the API would not say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.cds.cards import INDICATIONS, THERAPIES, short_name
from app.engine.model import RuleSet
from app.engine.present import StatusText
from app.engine.words import STATUS_WORDS
from app.errors import FieldError
from app.services.screenings import ScreeningJob
from app.web.view import DISEASE_NAMES

STATES = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
# The job's counts in the order of how good the news is, in the form's words.
STATUSES: tuple[StatusText, ...] = ("eligible", "indeterminate", "ineligible", "not_indicated")
HEADINGS = {status: STATUS_WORDS[status].capitalize() for status in STATUSES}
# The form's fields: where a problem the API names by its own field is shown on the page.
FIELDS = ("file", "mapping", "path", "source", "rulesets", "as_of")


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    name: str  # "ASTIS"
    title: str  # the rule set's own title, for the hint


@dataclass(frozen=True, slots=True)
class Group:
    """The rule sets of one therapy for one disease, chosen together or one by one."""

    id: str  # "hsct-ssc"
    title: str  # "Autologous HSCT for systemic sclerosis"
    choices: tuple[Choice, ...]


def groups(rulesets: Iterable[RuleSet]) -> list[Group]:
    """Rule sets by disease (SSc, SLE, then any other), then therapy, as the form orders them."""
    grouped: dict[tuple[str, str], list[RuleSet]] = {}
    for ruleset in rulesets:
        grouped.setdefault((str(ruleset.indication), str(ruleset.therapy)), []).append(ruleset)
    order = list(DISEASE_NAMES)

    def place(key: tuple[str, str]) -> tuple[int, str, str]:
        indication, therapy = key
        return (order.index(indication) if indication in order else 99, indication, therapy)

    out = []
    for indication, therapy in sorted(grouped, key=place):
        members = sorted(grouped[indication, therapy], key=lambda r: r.id)
        title = f"{THERAPIES.get(therapy, therapy)} for {INDICATIONS.get(indication, indication)}"
        choices = tuple(
            Choice(r.id, short_name({"id": r.id, "title": r.title}), r.title) for r in members
        )
        out.append(Group(f"{therapy}-{indication}", title, choices))
    return out


def chosen(posted: Sequence[str], known: Iterable[str]) -> list[str] | None:
    """The rule sets ticked: None (every rule set, those added later too) when all are."""
    ticked = list(dict.fromkeys(i.strip() for i in posted if i.strip()))
    return None if set(ticked) == set(known) else ticked


def field_errors(errors: Iterable[FieldError]) -> dict[str, list[str]]:
    """The API's problems by the form field they belong to (`source.path` is the `path`
    select, `rulesets[2]` the rule set boxes, `mapping.columns` the mapping); anything else
    under `form`, shown at the top."""
    out: dict[str, list[str]] = {}
    for error in errors:
        head = error.field.split(".")[0].split("[")[0]
        key = "path" if error.field == "source.path" else head
        out.setdefault(key if key in FIELDS else "form", []).append(error.message)
    return out


@dataclass(frozen=True, slots=True)
class Counts:
    id: str
    name: str
    therapy: str  # "Autologous HSCT for SSc"
    counts: tuple[int, ...]  # in STATUSES order


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int | None
    percent: float | None
    text: str  # "1,200 of 5,000 rows (24 %)"


def progress(job: ScreeningJob) -> Progress:
    shown = job["progress"]
    done, total, percent = shown["rows_done"], shown["rows_total"], shown["percent"]
    if job["state"] == "queued":
        text = "Waiting for a worker"
    elif total is None:
        text = f"{done:,} rows" if done else "Reading the source"
    else:
        text = f"{done:,} of {total:,} rows"
        if percent is not None:
            text += f" ({percent:g} %)"
    return Progress(done, total, percent, text)


def counts(job: ScreeningJob, names: Mapping[str, RuleSet]) -> list[Counts]:
    """Per rule set screened, the patients per status, in the order the request form lists
    them (by disease, then therapy); a rule set since removed comes last, by its id."""
    summary = job["summary"]
    if summary is None:
        return []
    order = {c.id: (n, g.title) for n, g in enumerate(groups(names.values())) for c in g.choices}
    out = []
    for entry in summary["rulesets"]:
        ruleset = names.get(entry["id"])
        name = short_name({"id": ruleset.id, "title": ruleset.title}) if ruleset else entry["id"]
        by_status = entry["counts"]
        therapy = order.get(entry["id"], (0, ""))[1]
        out.append(Counts(entry["id"], name, therapy, tuple(by_status.get(s, 0) for s in STATUSES)))
    return sorted(out, key=lambda c: (order.get(c.id, (len(order), ""))[0], c.name))


def source_words(job: ScreeningJob) -> str:
    """What was screened, in words: the file's name as uploaded or chosen, or the table."""
    source = job["request"]["source"]
    name = str(source.get("name") or "")
    if source.get("kind") == "url":
        return f"table {name}" if name else "a database table"
    return name or "an upload"


@dataclass(frozen=True, slots=True)
class ServerSource:
    value: str  # the path as the request names it
    shown: str  # "registry/cohort.parquet"


def server_sources(found: Iterable[tuple[Path, Path]]) -> list[ServerSource]:
    """(allowed directory, entry in it) as the page lists them: under the directory's name."""
    return [
        ServerSource(str(entry), f"{root.name}/{entry.relative_to(root)}") for root, entry in found
    ]
