"""Table 1: the screened cohort's characteristics, as a paper's first table describes it.

Counted over the rows that were screened (rejected rows are not in the cohort), from the
validated, canonical values the rule sets read (after units and missing-value codes), never
from the registry's raw text. Per feature present in the source: how many patients have it
known and missing; a number's median and interquartile range; a yes/no's patients with yes;
an enum's patients per value.

The values come through the screening query beside the verdicts (`table1:<feature>`
columns, dropped before the results are written), so the cohort is read once. A number is
counted as a frequency table of its values rounded to 0.01, merged batch by batch: a
million patients hold a few thousand distinct values, where keeping every value to sort them
would cost 8 MB per feature; the median and quartiles are then exact for the rounded values
(within 0.005 of the exact ones, below what the table prints).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, NotRequired

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.unit_names import words

PREFIX = "table1:"
DIGITS = 2  # numbers are counted rounded to 0.01

# The characteristics a rheumatology registry's Table 1 describes, in the order it lists
# them: demographics, diagnosis, disease extent, organ function, activity. Those the
# catalogue or the source lacks are left out.
FEATURES = (
    "age_years",
    "sex",
    "ssc_diagnosis",
    "sle_diagnosis",
    "ssc_subtype",
    "disease_duration_years",
    "mrss",
    "ild_present",
    "fvc_percent_predicted",
    "dlco_percent_predicted",
    "lvef_percent",
    "pah_diagnosis",
    "egfr",
    "serum_creatinine",
    "sledai_2k",
    "lupus_nephritis_class",
)

_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
class Category(TypedDict):
    value: str
    patients: int


@with_config(_STRICT)
class Characteristic(TypedDict):
    feature: str
    label: str
    type: FeatureType
    unit: Annotated[str | None, Field(description="The unit in words (numbers only)")]
    known: int
    missing: int
    median: NotRequired[float | None]
    q1: NotRequired[float | None]
    q3: NotRequired[float | None]
    categories: NotRequired[
        Annotated[
            list[Category],
            Field(description="Patients per value among the known (yes/no: true, false)"),
        ]
    ]


@with_config(_STRICT)
class Table1(TypedDict):
    """The screened cohort's characteristics; counts and summaries only."""

    screened: int
    rows: list[Characteristic]


def column(feature: str) -> str:
    return PREFIX + feature


def chosen(present: Sequence[str], features: Mapping[str, Feature]) -> list[str]:
    """The Table 1 features the catalogue has and the source gives (`present`: the mapped
    features), in Table 1's order."""
    given = set(present)
    return [f for f in FEATURES if f in features and f in given]


class Counts:
    """Table 1's counts, added batch by batch."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = tuple(features)
        self.screened = 0
        self.known: Counter[str] = Counter()
        self.values: dict[str, Counter[object]] = {f.id: Counter() for f in self.features}

    def add(self, batch: pa.RecordBatch) -> None:
        self.screened += batch.num_rows
        for feature in self.features:
            values = batch.column(column(feature.id))
            self.known[feature.id] += len(values) - values.null_count
            if feature.type == "number":
                values = pc.round(pc.cast(values, pa.float64()), DIGITS)
            counted = self.values[feature.id]
            for item in pc.value_counts(values).to_pylist():
                if item["values"] is not None:
                    counted[item["values"]] += item["counts"]

    def table(self) -> Table1:
        return {"screened": self.screened, "rows": [self._row(f) for f in self.features]}

    def _row(self, feature: Feature) -> Characteristic:
        known = self.known[feature.id]
        row: Characteristic = {
            "feature": feature.id,
            "label": feature.spec.label,
            "type": feature.type,
            "unit": words(feature.unit) if feature.unit else None,
            "known": known,
            "missing": self.screened - known,
        }
        counted = self.values[feature.id]
        if feature.type == "number":
            q1, median, q3 = quartiles(counted)
            row |= {"median": median, "q1": q1, "q3": q3}
        else:
            order = [True, False] if feature.type == "boolean" else feature.spec.values or []
            row["categories"] = [
                {"value": _text(v), "patients": counted[v]} for v in _ordered(order, counted)
            ]
        return row


def _ordered(order: Sequence[object], counted: Counter[object]) -> list[object]:
    """The catalogue's values in its order, then any other value found (none, validated)."""
    return [*order, *sorted((v for v in counted if v not in order), key=str)]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def quartiles(counted: Mapping[object, int]) -> tuple[float | None, float | None, float | None]:
    """The 25th, 50th and 75th percentiles of the values counted (linear interpolation
    between the two nearest ranks, as numpy's default and Excel's QUARTILE.INC); None for
    none."""
    values = sorted((float(v), n) for v, n in counted.items() if isinstance(v, int | float))
    total = sum(n for _, n in values)
    if not total:
        return None, None, None
    q1, median, q3 = (_percentile(values, total, p) for p in (0.25, 0.5, 0.75))
    return q1, median, q3


def _percentile(values: Sequence[tuple[float, int]], total: int, p: float) -> float:
    rank = p * (total - 1)
    low, high = int(rank), min(int(rank) + 1, total - 1)
    a, b = _at(values, low), _at(values, high)
    return round(a + (b - a) * (rank - low), DIGITS)


def _at(values: Sequence[tuple[float, int]], rank: int) -> float:
    """The value at 0-based `rank` in the sorted frequency table."""
    seen = 0
    for value, n in values:
        seen += n
        if rank < seen:
            return value
    return values[-1][0]
