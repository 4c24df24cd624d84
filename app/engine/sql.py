"""The rule tree compiled to SQLAlchemy Core: the second backend, for a registry at a time.

SQL's NULL is Kleene's unknown. `NULL AND FALSE` is FALSE, `NULL OR TRUE` is TRUE, `NOT NULL`
is NULL and a comparison with NULL is NULL: the same strong tables `evaluate.py` implements. So
a criterion compiles to one nullable boolean expression over the feature columns, and the
status to a CASE. Property tests hold these expressions to the Python evaluator on SQLite,
DuckDB, PostgreSQL and Spark SQL.

The expressions are dialect-neutral Core. Thresholds are rendered as `CAST(<repr> AS DOUBLE)`
so that every engine compares doubles with doubles (DuckDB and PostgreSQL would otherwise read
`0.1` as an exact DECIMAL, and compare differently from Python at the boundary).

Catalogue derivations (`derive.py`) compile here too (`derivations`): a derived feature's
column is the value its derivations imply where one of their conditions is known TRUE, else the
value given; where that replaces a value given, a flag says so (`corrected:<feature>` in the
results), as `derive.corrections` lists it in the API's answer.

Nothing here touches a connection: the caller chooses the engine and the relation whose columns
are named after the feature ids and hold canonical, validated values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement, Grouping
from sqlalchemy.sql.expression import FromClause

from app.engine.derive import in_order
from app.engine.evaluate import Status
from app.engine.model import (
    All,
    AnyOf,
    Atom,
    Between,
    Compare,
    Criterion,
    CriterionKind,
    Feature,
    Node,
    Not,
    Op,
    RuleSet,
    Scalar,
    atoms,
)
from app.engine.result_columns import (
    EXCLUDED_BY,
    MISSING,
    STATUS,
    TO_CONFIRM,
    column_name,
)

Columns = Callable[[str], ColumnElement[Any]]
Truth = ColumnElement[bool]


class _Double(sa.types.TypeDecorator[float]):
    """A float literal rendered so that it reads back as the same double everywhere."""

    impl = sa.Double
    cache_ok = True

    def literal_processor(self, dialect: sa.Dialect) -> Callable[[float], str]:  # noqa: ARG002
        return lambda value: repr(float(value))


def number(value: float) -> ColumnElement[float]:
    """A threshold as a double: `CAST(0.1 AS DOUBLE)` and not the DECIMAL 0.1."""
    return sa.cast(sa.literal(value, _Double()), sa.Double)


def scalar(value: Scalar) -> ColumnElement[Any]:
    """A rule's constant (threshold, enum value, derived value) as SQL."""
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, float):
        return number(value)
    return sa.literal(value, sa.String)


def _compare(atom: Compare, column: ColumnElement[Any]) -> Truth:
    right = scalar(atom.value)
    ops: dict[Op, Callable[[ColumnElement[Any], ColumnElement[Any]], Truth]] = {
        Op.LT: lambda a, b: a < b,
        Op.LE: lambda a, b: a <= b,
        Op.GT: lambda a, b: a > b,
        Op.GE: lambda a, b: a >= b,
        Op.EQ: lambda a, b: a == b,
        Op.NE: lambda a, b: a != b,
    }
    return ops[atom.op](column, right)


def atom_sql(atom: Atom, columns: Columns) -> Truth:
    column = columns(atom.feature)
    if isinstance(atom, Compare):
        return _compare(atom, column)
    if isinstance(atom, Between):
        # BETWEEN's SQL type is NullType in SQLAlchemy; the result is a boolean.
        return sa.type_coerce(column.between(number(atom.low), number(atom.high)), sa.Boolean)
    return column.in_([sa.literal(v, sa.String) for v in atom.values])


def node_sql(node: Node, columns: Columns) -> Truth:
    """One nullable boolean: TRUE met, FALSE not met, NULL unknown."""
    if isinstance(node, All):
        return sa.and_(*(node_sql(child, columns) for child in node.children)).self_group()
    if isinstance(node, AnyOf):
        return sa.or_(*(node_sql(child, columns) for child in node.children)).self_group()
    if isinstance(node, Not):
        # `not_` would push the negation into a comparison (`a < 5` -> `a >= 5`); that is
        # also Kleene-correct, but the explicit NOT keeps the SQL readable against the YAML.
        return sa.not_(node_sql(node.child, columns).self_group())
    return atom_sql(node, columns)


def unknown(truth: Truth) -> Truth:
    """`truth IS NULL`, parenthesised: SQLAlchemy prints `NOT x IS NULL` for a negation, which
    SQL reads as `NOT (x IS NULL)`."""
    return Grouping(truth).is_(None)


def is_true(truth: Truth) -> Truth:
    """TRUE when `truth` is TRUE, else FALSE (never NULL): a flag, not a Kleene value."""
    return sa.case((truth, sa.true()), else_=sa.false())


@dataclass(frozen=True, slots=True)
class Derived:
    """`derive` as SQL, per derived feature of the catalogue."""

    values: Mapping[str, ColumnElement[Any]]  # the value used: implied, else given
    corrected: Mapping[str, Truth]  # TRUE where the implied value replaced one given, else FALSE


def derivations(features: Sequence[Feature], given: Columns) -> Derived:
    """`derive.derive` as SQL over the columns of given values.

    As `derive` does, each derived feature is settled after the derived features its
    conditions read (`derive.in_order`): `CASE WHEN <one of its conditions holds> THEN
    <implied> ELSE <given> END` over those settled columns (an unknown condition derives
    nothing; the loader gives every derivation of one feature the same implied value).

    A value given was corrected where it is known, differs from the implied value and the
    implied value is the one used (the final value is one or the other)."""
    current: dict[str, ColumnElement[Any]] = {}

    def column(ident: str) -> ColumnElement[Any]:
        return current.get(ident, given(ident))

    ordered = in_order({f.id: f for f in features})
    for feature in ordered:
        holds = sa.or_(*(node_sql(r.when, column) for r in feature.derivations))
        current[feature.id] = sa.case((holds, scalar(_implied(feature))), else_=given(feature.id))
    corrected = {f.id: _corrected(f, given(f.id), column(f.id)) for f in ordered}
    return Derived(dict(current), corrected)


def _implied(feature: Feature) -> Scalar:
    """The value every derivation of `feature` implies (the loader refuses two)."""
    return feature.derivations[0].value


def _corrected(feature: Feature, given: ColumnElement[Any], final: ColumnElement[Any]) -> Truth:
    implied = _implied(feature)
    differs = _compare(Compare(feature.id, Op.NE, implied, ""), given)
    used = _compare(Compare(feature.id, Op.EQ, implied, ""), final)
    return is_true(sa.and_(given.is_not(None), differs, used))


def failing(criterion: Criterion, truth: Truth) -> Truth:
    """TRUE when the criterion rules the patient out (an exclusion met, anything else not met);
    NULL when that is unknown."""
    if criterion.kind is CriterionKind.EXCLUSION:
        return truth
    return sa.not_(truth.self_group())


def _status(deciding: tuple[tuple[Criterion, Truth], ...]) -> ColumnElement[str]:
    """`evaluate._status` as a CASE. A WHEN whose condition is NULL does not match, so
    `NOT indication` matches exactly when the indication is known to be absent, and the OR of
    the failing conditions exactly when one of them is known to fail."""
    (_, indication), rest = deciding[0], deciding[1:]
    label = {s: sa.literal(s.value, sa.String) for s in Status}
    whens: list[tuple[Truth, ColumnElement[str]]] = [
        (sa.not_(indication), label[Status.NOT_INDICATED])
    ]
    if rest:
        whens.append((sa.or_(*(failing(c, t) for c, t in rest)), label[Status.INELIGIBLE]))
    undecided = sa.or_(*(unknown(t) for _, t in deciding))
    whens.append((undecided, label[Status.INDETERMINATE]))
    return sa.case(*whens, else_=label[Status.ELIGIBLE])


def _paths(node: Node, above: tuple[Node, ...]) -> Iterator[tuple[Atom, tuple[Node, ...]]]:
    """Each atom with the composite nodes from the criterion's root down to it."""
    if isinstance(node, All | AnyOf):
        for child in node.children:
            yield from _paths(child, (*above, node))
    elif isinstance(node, Not):
        yield from _paths(node.child, (*above, node))
    else:
        yield node, above


def _stage(query: sa.Select[Any], name: str, fence: bool) -> FromClause:
    """A subquery; with `fence`, one the planner keeps (`OFFSET 0`). PostgreSQL otherwise
    pulls each stage up into the next and writes every reference to a column out as that
    column's whole expression: the shipped rule sets over 100,000 rows ran for minutes."""
    return (query.offset(0) if fence else query).subquery(name)


class Screening:
    """Several rule sets compiled over one relation of patients, in stages.

    Stage 1 computes every criterion once, and the composite nodes below a criterion's root
    that `missing` needs; stage 2 adds each rule set's status, stage 3 whether that is
    indeterminate. What a caller selects (the criterion a patient is excluded by, the missing
    features) refers to those columns. Done in one expression, each atom's path would repeat
    its ancestors' SQL and each missing flag the status CASE: the shipped rule sets printed
    330 kB of SQL that DuckDB spent half a second planning.

    `source` has a key column and one column per feature id, canonical and validated; the
    columns named in `carry` (a screening's `corrected:<feature>` flags) go to every result
    row as they are.
    """

    def __init__(
        self,
        rulesets: Sequence[RuleSet],
        source: FromClause,
        key: str = "id",
        *,
        fence: bool = False,
        carry: Sequence[str] = (),
    ) -> None:
        self.rulesets = tuple(rulesets)
        self.key = key
        self.carry = tuple(carry)
        columns: Columns = lambda f: source.c[f]  # noqa: E731
        selected: list[ColumnElement[Any]] = [source.c[key].label(key)]
        self._inner: dict[int, str] = {}
        used = sorted({a.feature for r in self.rulesets for c in r.deciding for a in atoms(c.when)})
        selected += [source.c[f].label(f) for f in used]
        selected += [source.c[c].label(c) for c in self.carry]
        for k, ruleset in enumerate(self.rulesets):
            for i, criterion in enumerate((*ruleset.deciding, *ruleset.cautions)):
                selected.append(node_sql(criterion.when, columns).label(f"c{k}_{i}"))
            for i, criterion in enumerate(ruleset.deciding):
                selected += self._inner_nodes(criterion.when, f"n{k}_{i}", columns)
        criteria = _stage(sa.select(*selected).select_from(source), "criteria", fence)
        statuses = [
            _status(tuple(self._deciding(criteria, k))).label(f"s{k}")
            for k in range(len(self.rulesets))
        ]
        stage = _stage(sa.select(criteria, *statuses), "statuses", fence)
        # Whether each rule set left the patient indeterminate, compared once: every missing
        # flag reads it (the shipped rule sets' 220 flags compared the status text 220 times).
        undecided = [
            (stage.c[f"s{k}"] == sa.literal(Status.INDETERMINATE.value, sa.String)).label(f"u{k}")
            for k in range(len(self.rulesets))
        ]
        self.stage = _stage(sa.select(stage, *undecided), "undecided", fence)

    def _inner_nodes(self, root: Node, prefix: str, columns: Columns) -> list[ColumnElement[Any]]:
        found: list[ColumnElement[Any]] = []
        for _, ancestors in _paths(root, ()):
            for node in ancestors[1:]:
                if id(node) not in self._inner:
                    self._inner[id(node)] = label = f"{prefix}_{len(found)}"
                    found.append(node_sql(node, columns).label(label))
        return found

    def _criteria(self, stage: FromClause, k: int) -> list[tuple[Criterion, Truth]]:
        ruleset = self.rulesets[k]
        every = (*ruleset.deciding, *ruleset.cautions)
        return [(c, stage.c[f"c{k}_{i}"]) for i, c in enumerate(every)]

    def _deciding(self, stage: FromClause, k: int) -> list[tuple[Criterion, Truth]]:
        return self._criteria(stage, k)[: len(self.rulesets[k].deciding)]

    def criteria(self, k: int) -> list[tuple[Criterion, Truth]]:
        """Rule set k's criteria (deciding, then cautions) as columns."""
        return self._criteria(self.stage, k)

    def deciding(self, k: int) -> list[tuple[Criterion, Truth]]:
        return self._deciding(self.stage, k)

    def status(self, k: int) -> ColumnElement[str]:
        return self.stage.c[f"s{k}"]

    def excluded_by(self, k: int) -> ColumnElement[str]:
        """The first criterion, in reading order, that rules the patient out (NULL if none):
        the box of the attrition funnel the patient leaves by."""
        whens = [(failing(c, t), sa.literal(c.id, sa.String)) for c, t in self.deciding(k)]
        return sa.case(*whens, else_=sa.null())

    def missing(self, k: int) -> dict[str, Truth]:
        """`evaluate.deciding_unknowns` as SQL: a feature is missing for an indeterminate
        patient when one of its atoms is reached from an unknown criterion through unknown
        nodes only. Its atom is then unknown exactly when its column is NULL."""
        paths: dict[str, list[Truth]] = {}
        for criterion, truth in self.deciding(k):
            for atom, ancestors in _paths(criterion.when, ()):
                inner = [unknown(self.stage.c[self._inner[id(n)]]) for n in ancestors[1:]]
                paths.setdefault(atom.feature, []).append(
                    sa.and_(unknown(truth), *inner, self.stage.c[atom.feature].is_(None))
                )
        indeterminate = self.stage.c[f"u{k}"]
        return {f: sa.and_(indeterminate, sa.or_(*conds)) for f, conds in sorted(paths.items())}

    def verdicts(self, *, missing: bool = False) -> sa.Select[Any]:
        """One row per patient: the key, then per rule set its status, the criterion that
        excluded the patient, each criterion (TRUE met, FALSE not met, NULL unknown) and, on
        request, whether each feature's absence keeps the patient indeterminate: values to
        measure as `<ruleset>:missing:<feature>`, clinician confirmations as
        `<ruleset>:to_confirm:<feature>`, as `decide` splits `missing` from `to_confirm`. The
        carried columns come after the key."""
        selected: list[ColumnElement[Any]] = [self.stage.c[self.key]]
        selected += [self.stage.c[c] for c in self.carry]
        for k, ruleset in enumerate(self.rulesets):
            selected.append(self.status(k).label(column_name(ruleset, STATUS)))
            selected.append(self.excluded_by(k).label(column_name(ruleset, EXCLUDED_BY)))
            selected += [t.label(column_name(ruleset, c.id)) for c, t in self.criteria(k)]
            if missing:
                selected += [
                    flag.label(column_name(ruleset, awaits(ruleset, f), f))
                    for f, flag in self.missing(k).items()
                ]
        twice = sorted(n for n, k in Counter(c.name for c in selected).items() if k > 1)
        if twice:
            raise ValueError(f"result columns named twice: {', '.join(twice)}")
        return sa.select(*selected).select_from(self.stage)


def awaits(ruleset: RuleSet, feature: str) -> str:
    """What an undecided patient awaits of a feature: a clinician's confirmation
    (`to_confirm`), or a value to measure (`missing`)."""
    return TO_CONFIRM if feature in ruleset.confirmations else MISSING
