"""The columns a screening query carries besides the results' own, by name: what the runner
reads of a query's batches needs them without SQLAlchemy (app/batch/validate.py writes the
query; a screening run from the compiled-SQL cache never imports it)."""

from __future__ import annotations

from collections.abc import Sequence

from app.engine.model import Feature
from app.engine.result_columns import corrected_column

ROW = "_row"  # the row's 1-based position in the source
PROBLEMS = "_problems"  # text, NULL when the row is fine (see `problem_fields`)
VALID = "_valid"
KEY = "id"


def completed(feature: Feature) -> bool:
    """Counted in completed units (`integer: completed`): a fraction is rounded down."""
    return feature.spec.integer == "completed"


def corrected_columns(features: Sequence[Feature]) -> list[str]:
    """The flags `validate.validated` adds, one per derived feature (TRUE where the value given
    was replaced by the implied one) and one per feature counted in completed units (TRUE
    where a fraction was rounded down)."""
    return [corrected_column(f.id) for f in features if f.derivations or completed(f)]


# A row's `_problems`: its problems joined by PROBLEM_SEP, each four fields joined by FIELD_SEP
# (registry column, feature id, what is wrong, the cell as written), for the runner to take
# apart with Arrow. Control characters no registry column name or problem text holds; a cell's
# own are replaced by a space.
PROBLEM_SEP = "\x1e"
FIELD_SEP = "\x1f"
