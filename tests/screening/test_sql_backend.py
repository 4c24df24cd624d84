"""The SQL backend against the Python evaluator: random rule trees, random patients with
missing values, on SQLite, DuckDB, PostgreSQL and Spark SQL (local mode).

For every patient and rule set, the status, each criterion's met / not met / unknown, the
criterion the patient leaves the funnel by and the missing features must be identical.
Thresholds and patient values are drawn from a shared pool as well as at random, so that
values land exactly on a threshold (`<` against `<=`, BETWEEN's ends) and on doubles whose
decimal reading differs from their binary one (0.1 + 0.2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.evaluate import Decision, Result, decide
from app.engine.inputs import FeatureValue
from app.engine.model import (
    All,
    AnyOf,
    Atom,
    Between,
    Compare,
    Criterion,
    CriterionKind,
    In,
    Node,
    Not,
    Op,
    RuleBase,
    RuleSet,
)
from app.engine.schema import EvidenceStatus, Indication, ReviewStatus, Therapy
from app.engine.sql import Screening
from tests.databases import postgres_database
from tests.screening.backends import (
    Backend,
    DuckDBBackend,
    Row,
    SparkBackend,
    SQLAlchemyBackend,
)

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

NUMBERS = ("n1", "n2", "n3")
BOOLEANS = ("b1", "b2")
ENUM = "e1"
ENUM_VALUES = ("alpha", "beta", "gamma")
POOL = (0.0, 0.1, 0.3, 0.1 + 0.2, 1.0, 14.0, 45.0, 45.5, 60.0049261, -2.5, 1e-7)

numbers = st.one_of(
    st.sampled_from(POOL), st.floats(-100, 100, allow_nan=False, allow_infinity=False)
)


@st.composite
def atoms(draw: st.DrawFn) -> Atom:
    kind = draw(st.sampled_from(["number", "between", "boolean", "enum", "in"]))
    if kind == "number":
        op = draw(st.sampled_from(list(Op)))
        return Compare(draw(st.sampled_from(NUMBERS)), op, draw(numbers), "n")
    if kind == "between":
        low, high = sorted((draw(numbers), draw(numbers)))
        return Between(draw(st.sampled_from(NUMBERS)), low, high, "between")
    if kind == "boolean":
        op = draw(st.sampled_from([Op.EQ, Op.NE]))
        return Compare(draw(st.sampled_from(BOOLEANS)), op, draw(st.booleans()), "b")
    if kind == "enum":
        op = draw(st.sampled_from([Op.EQ, Op.NE]))
        return Compare(ENUM, op, draw(st.sampled_from(ENUM_VALUES)), "e")
    values = draw(st.lists(st.sampled_from(ENUM_VALUES), min_size=1, max_size=3, unique=True))
    return In(ENUM, tuple(values), "in")


def _grow(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    several = st.lists(children, min_size=1, max_size=3).map(tuple)
    return st.one_of(several.map(All), several.map(AnyOf), children.map(Not))


trees: st.SearchStrategy[Node] = st.recursive(atoms(), _grow, max_leaves=8)


def _criterion(ident: str, kind: CriterionKind, when: Node) -> Criterion:
    return Criterion(
        id=ident,
        kind=kind,
        title=ident,
        when=when,
        text=ident,
        citations=(),
        source="test",
        evidence=EvidenceStatus.VERIFIED,
        note=None,
        features=(),
    )


@st.composite
def rulesets(draw: st.DrawFn, ident: str) -> RuleSet:
    def several(kind: CriterionKind, most: int) -> tuple[Criterion, ...]:
        found = draw(st.lists(trees, max_size=most))
        return tuple(_criterion(f"{kind.value}-{i}", kind, t) for i, t in enumerate(found))

    return RuleSet(
        id=ident,
        version="1.0.0",
        hash="0",
        title=ident,
        therapy=Therapy.HSCT,
        indication=Indication.SSC,
        protocol="test",
        source="test",
        review_status=ReviewStatus.DRAFT,
        review_note="test",
        file="test.yaml",
        indication_criterion=_criterion("indication", CriterionKind.INDICATION, draw(trees)),
        inclusions=several(CriterionKind.INCLUSION, 3),
        exclusions=several(CriterionKind.EXCLUSION, 3),
        cautions=several(CriterionKind.CAUTION, 2),
        risks=(),
        outcomes=(),
        notes=(),
        includes=(),
        confirmations=frozenset(),
        citations=(),
        snapshot={},
    )


@st.composite
def patients(draw: st.DrawFn) -> Row:
    row: Row = {}
    for name in NUMBERS:
        row[name] = draw(st.none() | numbers)
    for name in BOOLEANS:
        row[name] = draw(st.none() | st.booleans())
    row[ENUM] = draw(st.none() | st.sampled_from(ENUM_VALUES))
    return row


@dataclass(frozen=True)
class Case:
    rulesets: list[RuleSet]
    patients: list[Row]


@st.composite
def cases(draw: st.DrawFn, most_rulesets: int = 3, most_patients: int = 12) -> Case:
    count = draw(st.integers(1, most_rulesets))
    found = [draw(rulesets(f"rs{i}")) for i in range(count)]
    rows = draw(st.lists(patients(), min_size=1, max_size=most_patients))
    return Case(found, [{"id": i, **row} for i, row in enumerate(rows)])


def patients_table(features: Sequence[tuple[str, sa.types.TypeEngine[Any]]]) -> sa.Table:
    columns = [sa.Column(name, kind) for name, kind in features]
    return sa.Table("patients", sa.MetaData(), sa.Column("id", sa.Integer), *columns)


TABLE = patients_table(
    [
        *((n, sa.Double()) for n in NUMBERS),
        *((b, sa.Boolean()) for b in BOOLEANS),
        (ENUM, sa.String(16)),
    ]
)


def query(table: sa.Table, rulesets: Sequence[RuleSet]) -> sa.Select[Any]:
    return Screening(rulesets, table).verdicts(missing=True).order_by("id")


def _truth(value: Any) -> Result:
    return Result.UNKNOWN if value is None else (Result.MET if value else Result.NOT_MET)


def _excluded_by(decision: Decision) -> str | None:
    for r in decision.criteria:
        kind = r.criterion.kind
        fails = Result.MET if kind is CriterionKind.EXCLUSION else Result.NOT_MET
        if r.result is fails:
            return r.criterion.id
    return None


def expected(ruleset: RuleSet, row: Row) -> list[Any]:
    values = {k: FeatureValue(v, None, v, None) for k, v in row.items() if v is not None}
    decision = decide(ruleset, values)
    compiled_missing = sorted({a.feature for c in ruleset.deciding for a in _atoms(c.when)})
    return [
        decision.status.value,
        _excluded_by(decision),
        *(r.result for r in (*decision.criteria, *decision.cautions)),
        *(f in decision.missing for f in compiled_missing),
    ]


def _atoms(node: Node) -> Iterator[Atom]:
    if isinstance(node, All | AnyOf):
        for child in node.children:
            yield from _atoms(child)
    elif isinstance(node, Not):
        yield from _atoms(node.child)
    else:
        yield node


def actual(ruleset: RuleSet, cells: Sequence[Any]) -> list[Any]:
    """One rule set's cells of a result row, in `expected`'s shape."""
    criteria = len(ruleset.deciding) + len(ruleset.cautions)
    status, first = cells[0], cells[1]
    truths = [_truth(v) for v in cells[2 : 2 + criteria]]
    missing = [bool(v) for v in cells[2 + criteria :]]
    return [status, first, *truths, *missing]


def width(ruleset: RuleSet) -> int:
    features = {a.feature for c in ruleset.deciding for a in _atoms(c.when)}
    return 2 + len(ruleset.deciding) + len(ruleset.cautions) + len(features)


def check(backend: Backend, table: sa.Table, case: Case) -> None:
    rows = backend.run(table, case.patients, query(table, case.rulesets))
    assert [r[0] for r in rows] == [p["id"] for p in case.patients]
    for row, patient in zip(rows, case.patients, strict=True):
        at = 1
        for ruleset in case.rulesets:
            cells = row[at : at + width(ruleset)]
            at += width(ruleset)
            assert actual(ruleset, cells) == expected(ruleset, patient), (
                f"{backend.name}: rule set {ruleset.id}, patient {patient}"
            )
        assert at == len(row)


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    backend = SQLAlchemyBackend("sqlite", f"sqlite:///{tmp_path_factory.mktemp('sql')}/t.db")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Backend]:
    with postgres_database() as url:
        backend = SQLAlchemyBackend("postgres", url)
        yield backend
        backend.close()


@pytest.fixture(scope="module")
def duckdb_backend() -> Iterator[Backend]:
    backend = DuckDBBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def spark_backend(spark: Any) -> Backend:
    return SparkBackend(spark)


# Examples per engine: Spark takes ~0.3 s a query, so it gets fewer, larger cases.
RUNS = {
    "sqlite": (300, cases()),
    "duckdb_backend": (300, cases()),
    "postgres": (150, cases()),
    "spark_backend": (25, cases(most_rulesets=6, most_patients=40)),
}


@pytest.mark.parametrize("engine", list(RUNS))
def test_sql_matches_the_python_evaluator(engine: str, request: pytest.FixtureRequest) -> None:
    backend: Backend = request.getfixturevalue(engine)
    examples, strategy = RUNS[engine]

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(case: Case) -> None:
        check(backend, TABLE, case)

    run()


def _shipped_table(rules: RuleBase) -> sa.Table:
    kinds: dict[str, sa.types.TypeEngine[Any]] = {
        "number": sa.Double(),
        "boolean": sa.Boolean(),
        "enum": sa.String(64),
    }
    return patients_table([(f.id, kinds[f.type.value]) for f in rules.features.values()])


def test_every_shipped_rule_set_matches_on_duckdb(
    shipped_rules: RuleBase, duckdb_backend: Backend
) -> None:
    """The real rule sets, with random patients over the whole catalogue."""
    table = _shipped_table(shipped_rules)

    def value(feature_id: str) -> st.SearchStrategy[Any]:
        spec = shipped_rules.features[feature_id].spec
        if spec.type.value == "boolean":
            return st.booleans()
        if spec.type.value == "enum":
            return st.sampled_from(spec.values or [])
        low, high = spec.range or (0.0, 100.0)
        return st.floats(low, high, allow_nan=False)

    patient = st.fixed_dictionaries({f: st.none() | value(f) for f in shipped_rules.features})

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(patient, min_size=1, max_size=20))
    def run(rows: list[Row]) -> None:
        case = Case(
            list(shipped_rules.rulesets.values()), [{"id": i, **r} for i, r in enumerate(rows)]
        )
        check(duckdb_backend, table, case)

    run()
