"""The SQL backend against the Python evaluator: random rule trees, random patients with
missing values, on SQLite, DuckDB, PostgreSQL and Spark SQL (local mode).

For every patient and rule set, the status, each criterion's met / not met / unknown, the
criterion the patient leaves the funnel by, the values missing and the confirmations awaited
must be identical. Thresholds and patient values are drawn from a shared pool as well as at
random, so that values land exactly on a threshold (`<` against `<=`, BETWEEN's ends) and on
doubles whose decimal reading differs from their binary one (0.1 + 0.2).

Random catalogue derivations (chains, forward references in catalogue order, several
derivations of one feature, all implying its one value as the loader requires), over patients
who often give a value against them, are held to `derive`: the same final values, a
`corrected` flag exactly where `derive.corrections` lists a replaced value, and the same
verdicts as `decide(derive(values))`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.derive import corrections, derive
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
    Derivation,
    Feature,
    In,
    Node,
    Not,
    Op,
    RuleBase,
    RuleSet,
    Scalar,
)
from app.engine.result_columns import MISSING, TO_CONFIRM, column_name
from app.engine.schema import (
    EvidenceStatus,
    FeatureSpec,
    FeatureType,
    Indication,
    ReviewStatus,
    Therapy,
)
from app.engine.sql import Screening, derivations
from tests.databases import postgres_database
from tests.screening.backends import (
    Backend,
    Row,
    SQLAlchemyBackend,
)

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

NUMBERS = ("n1", "n2", "n3")
BOOLEANS = ("b1", "b2")
ENUM = "e1"
ENUM_VALUES = ("alpha", "beta", "gamma")
FEATURES = (*NUMBERS, *BOOLEANS, ENUM)
POOL = (0.0, 0.1, 0.3, 0.1 + 0.2, 1.0, 14.0, 45.0, 45.5, 60.0049261, -2.5, 1e-7)

numbers = st.one_of(
    st.sampled_from(POOL), st.floats(-100, 100, allow_nan=False, allow_infinity=False)
)


def _kinds(features: Sequence[str]) -> list[str]:
    kinds = []
    if set(features) & set(NUMBERS):
        kinds += ["number", "between"]
    if set(features) & set(BOOLEANS):
        kinds += ["boolean"]
    if ENUM in features:
        kinds += ["enum", "in"]
    return kinds


@st.composite
def atoms(draw: st.DrawFn, features: Sequence[str] = FEATURES) -> Atom:
    """A comparison over one of `features` (all of them by default)."""
    kind = draw(st.sampled_from(_kinds(features)))
    numeric = [f for f in features if f in NUMBERS]
    if kind == "number":
        op = draw(st.sampled_from(list(Op)))
        return Compare(draw(st.sampled_from(numeric)), op, draw(numbers), "n")
    if kind == "between":
        low, high = sorted((draw(numbers), draw(numbers)))
        return Between(draw(st.sampled_from(numeric)), low, high, "between")
    if kind == "boolean":
        op = draw(st.sampled_from([Op.EQ, Op.NE]))
        feature = draw(st.sampled_from([f for f in features if f in BOOLEANS]))
        return Compare(feature, op, draw(st.booleans()), "b")
    if kind == "enum":
        op = draw(st.sampled_from([Op.EQ, Op.NE]))
        return Compare(ENUM, op, draw(st.sampled_from(ENUM_VALUES)), "e")
    values = draw(st.lists(st.sampled_from(ENUM_VALUES), min_size=1, max_size=3, unique=True))
    return In(ENUM, tuple(values), "in")


def _grow(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    several = st.lists(children, min_size=1, max_size=3).map(tuple)
    return st.one_of(several.map(All), several.map(AnyOf), children.map(Not))


def trees_over(features: Sequence[str], leaves: int = 8) -> st.SearchStrategy[Node]:
    return st.recursive(atoms(features), _grow, max_leaves=leaves)


trees = trees_over(FEATURES)


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
        # `decide` and the SQL split by name whatever the feature's type
        confirmations=draw(st.frozensets(st.sampled_from(FEATURES), max_size=3)),
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
    catalogue: tuple[Feature, ...] = ()  # with derivations, in catalogue order


@st.composite
def cases(draw: st.DrawFn, most_rulesets: int = 3, most_patients: int = 12) -> Case:
    count = draw(st.integers(1, most_rulesets))
    found = [draw(rulesets(f"rs{i}")) for i in range(count)]
    rows = draw(st.lists(patients(), min_size=1, max_size=most_patients))
    return Case(found, [{"id": i, **row} for i, row in enumerate(rows)])


def _spec(name: str) -> FeatureSpec:
    kind = (
        FeatureType.NUMBER
        if name in NUMBERS
        else FeatureType.BOOLEAN
        if name in BOOLEANS
        else FeatureType.ENUM
    )
    values = list(ENUM_VALUES) if kind is FeatureType.ENUM else None
    return FeatureSpec(id=name, type=kind, label=name, description=name, group="t", values=values)


def _derived_value(name: str) -> st.SearchStrategy[Scalar]:
    if name in NUMBERS:
        return st.sampled_from(POOL)
    if name in BOOLEANS:
        return st.booleans()
    return st.sampled_from(ENUM_VALUES)


@st.composite
def catalogues(draw: st.DrawFn) -> tuple[Feature, ...]:
    """The test features in a random catalogue order, up to four of them derived. A
    derivation reads only features ranked below its own in a second random order (the loader
    refuses cycles), so chains run both ways through the catalogue; a feature may have several
    derivations, all implying one value (the loader refuses two, E029)."""
    order = draw(st.permutations(FEATURES))
    rank = draw(st.permutations(FEATURES))
    targets = draw(st.sets(st.sampled_from(FEATURES), max_size=4))
    found = []
    for name in order:
        below = rank[: rank.index(name)]
        rules: list[Derivation] = []
        if name in targets and below:
            implied = draw(_derived_value(name))
            for _ in range(draw(st.integers(1, 3))):
                when = draw(trees_over(below, leaves=4))
                rules.append(Derivation(when, implied, "because", "text"))
        found.append(Feature(_spec(name), tuple(rules)))
    return tuple(found)


@st.composite
def derivation_cases(draw: st.DrawFn, most_rulesets: int = 2, most_patients: int = 12) -> Case:
    case = draw(cases(most_rulesets, most_patients))
    return Case(case.rulesets, case.patients, draw(catalogues()))


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


def query(source: sa.FromClause, rulesets: Sequence[RuleSet]) -> sa.Select[Any]:
    return Screening(rulesets, source).verdicts(missing=True).order_by("id")


def _truth(value: Any) -> Result:
    return Result.UNKNOWN if value is None else (Result.MET if value else Result.NOT_MET)


def _excluded_by(decision: Decision) -> str | None:
    for r in decision.criteria:
        kind = r.criterion.kind
        fails = Result.MET if kind is CriterionKind.EXCLUSION else Result.NOT_MET
        if r.result is fails:
            return r.criterion.id
    return None


Values = Mapping[str, FeatureValue]


def given_values(row: Row) -> dict[str, FeatureValue]:
    return {
        k: FeatureValue(v, None, v, None) for k, v in row.items() if k != "id" and v is not None
    }


def expected(ruleset: RuleSet, values: Values) -> list[Any]:
    decision = decide(ruleset, values)
    return [
        decision.status.value,
        _excluded_by(decision),
        *(r.result for r in (*decision.criteria, *decision.cautions)),
        sorted(decision.missing),
        sorted(decision.to_confirm),
    ]


def _atoms(node: Node) -> Iterator[Atom]:
    if isinstance(node, All | AnyOf):
        for child in node.children:
            yield from _atoms(child)
    elif isinstance(node, Not):
        yield from _atoms(node.child)
    else:
        yield node


def actual(ruleset: RuleSet, cells: Mapping[str, Any]) -> list[Any]:
    """One rule set's cells of a result row (by column name), in `expected`'s shape. Every
    feature of a deciding criterion has one flag column, named for what the patient awaits of
    it: `missing` for a value to measure, `to_confirm` for a confirmation."""
    every = (*ruleset.deciding, *ruleset.cautions)
    awaited: dict[str, list[str]] = {MISSING: [], TO_CONFIRM: []}
    compiled = {a.feature for c in ruleset.deciding for a in _atoms(c.when)}
    for feature in compiled:
        kind = TO_CONFIRM if feature in ruleset.confirmations else MISSING
        other = MISSING if kind == TO_CONFIRM else TO_CONFIRM
        assert column_name(ruleset, other, feature) not in cells
        if cells[column_name(ruleset, kind, feature)]:
            awaited[kind].append(feature)
    flags = [
        n
        for n in cells
        if n.startswith((f"{ruleset.id}:{MISSING}:", f"{ruleset.id}:{TO_CONFIRM}:"))
    ]
    assert len(flags) == len(compiled)
    return [
        cells[column_name(ruleset, "status")],
        cells[column_name(ruleset, "excluded_by")],
        *(_truth(cells[column_name(ruleset, c.id)]) for c in every),
        sorted(awaited[MISSING]),
        sorted(awaited[TO_CONFIRM]),
    ]


def results(
    backend: Backend, table: sa.Table, rows: Sequence[Row], select: sa.Select[Any]
) -> list[dict[str, Any]]:
    names = [c.name for c in select.selected_columns]
    return [dict(zip(names, row, strict=True)) for row in backend.run(table, rows, select)]


def check(backend: Backend, table: sa.Table, case: Case) -> None:
    found = results(backend, table, case.patients, query(table, case.rulesets))
    assert [r["id"] for r in found] == [p["id"] for p in case.patients]
    for cells, patient in zip(found, case.patients, strict=True):
        for ruleset in case.rulesets:
            assert actual(ruleset, cells) == expected(ruleset, given_values(patient)), (
                f"{backend.name}: rule set {ruleset.id}, patient {patient}"
            )


def derived_source(table: sa.Table, catalogue: Sequence[Feature]) -> tuple[sa.Subquery, list[str]]:
    """The table with each feature as `derivations` completes it, and per derived feature its
    correction flag (`x<i>`, named by the feature in the list returned)."""
    derived = derivations(catalogue, lambda f: table.c[f])
    values = [derived.values.get(f.id, table.c[f.id]).label(f.id) for f in catalogue]
    flags = [flag.label(f"x{i}") for i, flag in enumerate(derived.corrected.values())]
    source = sa.select(table.c.id, *values, *flags).subquery("derived")
    return source, list(derived.corrected)


def python_derived(
    catalogue: Sequence[Feature], row: Row
) -> tuple[dict[str, FeatureValue], set[str]]:
    """`derive` over a row: the values, and the features whose given value it replaced."""
    values = derive(given_values(row), {f.id: f for f in catalogue})
    return values, {ident for ident, _ in corrections(values)}


def _same(feature: Feature, value: Any) -> Any:
    """A cell read back as Python compares it: SQLite returns a CASE's boolean as 0/1."""
    if value is None or feature.type is not FeatureType.BOOLEAN:
        return value
    return bool(value)


def check_derived(backend: Backend, table: sa.Table, case: Case) -> int:
    """The values and corrections of `derive`, then the verdicts of `decide` over the derived
    values, row by row. Returns how many values given were corrected (for the tests that want
    some)."""
    source, derived_features = derived_source(table, case.catalogue)
    by_id = sa.select(source).order_by(source.c.id)
    derived = results(backend, table, case.patients, by_id)
    verdicts = results(backend, table, case.patients, query(source, case.rulesets))
    corrected = 0
    for cells, verdict, patient in zip(derived, verdicts, case.patients, strict=True):
        values, replaced = python_derived(case.catalogue, patient)
        flagged = {f for i, f in enumerate(derived_features) if cells[f"x{i}"]}
        assert flagged == replaced, f"{backend.name}: {patient}"
        assert all(cells[f"x{i}"] is not None for i in range(len(derived_features)))
        corrected += len(replaced)
        for feature in case.catalogue:
            want = values[feature.id].value if feature.id in values else None
            assert _same(feature, cells[feature.id]) == want, f"{backend.name}: {patient}"
        for ruleset in case.rulesets:
            assert actual(ruleset, verdict) == expected(ruleset, values), (
                f"{backend.name}: rule set {ruleset.id}, patient {patient}"
            )
    return corrected


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


# Examples per engine: Spark takes ~0.3 s a query, so it gets fewer, larger cases.
RUNS = {
    "sqlite": (300, cases()),
    "duckdb_backend": (300, cases()),
    "postgres": (150, cases()),
    "spark_backend": (25, cases(most_rulesets=6, most_patients=40)),
}
DERIVATION_RUNS = {
    "sqlite": (200, derivation_cases()),
    "duckdb_backend": (200, derivation_cases()),
    "postgres": (100, derivation_cases()),
    "spark_backend": (15, derivation_cases(most_rulesets=4, most_patients=40)),
}
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


@pytest.mark.parametrize("engine", list(RUNS))
def test_sql_matches_the_python_evaluator(engine: str, request: pytest.FixtureRequest) -> None:
    backend: Backend = request.getfixturevalue(engine)
    examples, strategy = RUNS[engine]

    @settings(max_examples=examples, deadline=None, suppress_health_check=SLOW)
    @given(strategy)
    def run(case: Case) -> None:
        check(backend, TABLE, case)

    run()


@pytest.mark.parametrize("engine", list(DERIVATION_RUNS))
def test_derivations_match_derive_and_then_decide(
    engine: str, request: pytest.FixtureRequest
) -> None:
    backend: Backend = request.getfixturevalue(engine)
    examples, strategy = DERIVATION_RUNS[engine]

    @settings(max_examples=examples, deadline=None, suppress_health_check=SLOW)
    @given(strategy)
    def run(case: Case) -> None:
        check_derived(backend, TABLE, case)

    run()


def _derives(name: str, *rules: tuple[Node, Scalar]) -> Feature:
    return Feature(_spec(name), tuple(Derivation(w, v, "because", "text") for w, v in rules))


def test_a_derivation_later_in_the_catalogue_is_settled_first(
    duckdb_backend: Backend,
) -> None:
    """b1 is derived from n2 or from b2, which comes later in the catalogue and is itself
    derived from n1: `derive` settles b2 before b1, whatever the catalogue's order. A value
    given against either is replaced, through the chain too, and flagged."""
    catalogue = (
        _derives(
            "b1", (Compare("n2", Op.GT, 0.0, ""), True), (Compare("b2", Op.EQ, True, ""), True)
        ),
        _derives("b2", (Compare("n1", Op.GT, 0.0, ""), True)),
        *(Feature(_spec(f)) for f in FEATURES if f not in {"b1", "b2"}),
    )
    rows: list[Row] = [
        {"id": 0, "n1": 1.0},  # only through b2: true in the second pass
        {"id": 1, "n1": 1.0, "b1": False},  # b1 given against b2's implication: replaced
        {"id": 2, "n1": 1.0, "b1": False, "b2": False},  # both replaced, b1 through b2
        {"id": 3, "n1": -1.0, "b1": False, "b2": False},  # nothing holds: as given
        {"id": 4, "b1": False, "b2": False},  # n1 unknown: nothing derived
        {"id": 5, "n2": 1.0, "b1": True},  # given as implied: no correction
    ]
    patients = [{**dict.fromkeys(FEATURES), **row} for row in rows]
    assert check_derived(duckdb_backend, TABLE, Case([], patients, catalogue)) == 3
    source, names = derived_source(TABLE, catalogue)
    found = results(duckdb_backend, TABLE, patients, sa.select(source).order_by(source.c.id))
    assert [(r["b1"], r["b2"]) for r in found] == [
        (True, True),
        (True, True),
        (True, True),
        (False, False),
        (False, False),
        (True, None),
    ]
    assert names == ["b2", "b1"]  # settled in that order
    assert [(r["x0"], r["x1"]) for r in found] == [
        (False, False),
        (False, True),
        (True, True),
        (False, False),
        (False, False),
        (False, False),
    ]


def test_a_replaced_value_is_read_as_derive_reads_it(duckdb_backend: Backend) -> None:
    """b1 is derived true where b2 is false, and b2 true where n1 > 0; b2 is given false
    against its implication. b2 is settled (replaced by true) before b1's condition reads
    it, so b1 keeps what was given, in either catalogue order, in SQL as in `derive`."""
    b1 = _derives("b1", (Compare("b2", Op.EQ, False, ""), True))
    b2 = _derives("b2", (Compare("n1", Op.GT, 0.0, ""), True))
    rest = tuple(Feature(_spec(f)) for f in FEATURES if f not in {"b1", "b2"})
    rows: list[Row] = [
        {"id": 0, "n1": 1.0, "b1": False, "b2": False},
        {"id": 1, "n1": 1.0, "b2": False},
    ]
    patients = [{**dict.fromkeys(FEATURES), **row} for row in rows]
    for catalogue in ((b1, b2, *rest), (b2, b1, *rest)):
        check_derived(duckdb_backend, TABLE, Case([], patients, catalogue))
        source, _ = derived_source(TABLE, catalogue)
        found = results(duckdb_backend, TABLE, patients, sa.select(source).order_by(source.c.id))
        assert [(r["b1"], r["b2"]) for r in found] == [(False, True), (None, True)]


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
    """The real rule sets and the catalogue's own derivations, with random patients over the
    whole catalogue."""
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
    catalogue = tuple(shipped_rules.features.values())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(patient, min_size=1, max_size=20))
    def run(rows: list[Row]) -> None:
        case = Case(
            list(shipped_rules.rulesets.values()),
            [{"id": i, **r} for i, r in enumerate(rows)],
            catalogue,
        )
        check(duckdb_backend, table, case)
        check_derived(duckdb_backend, table, case)

    run()


def test_carried_columns_follow_the_key_and_never_shadow_a_result(
    duckdb_backend: Backend,
) -> None:
    """`carry` copies a source column to every result row (the screening's correction flags);
    a name a rule set's own column already has is refused rather than written twice."""
    ruleset = RuleSet(
        id="rs",
        version="1.0.0",
        hash="0",
        title="rs",
        therapy=Therapy.HSCT,
        indication=Indication.SSC,
        protocol="test",
        source="test",
        review_status=ReviewStatus.DRAFT,
        review_note="test",
        file="test.yaml",
        indication_criterion=_criterion(
            "indication", CriterionKind.INDICATION, Compare("b2", Op.EQ, True, "b2")
        ),
        inclusions=(),
        exclusions=(),
        cautions=(),
        risks=(),
        outcomes=(),
        notes=(),
        includes=(),
        confirmations=frozenset(),
        citations=(),
        snapshot={},
    )
    flagged = sa.select(TABLE, (TABLE.c.n1 > 0).label("corrected:b1")).subquery("flagged")
    select = Screening([ruleset], flagged, carry=["corrected:b1"]).verdicts().order_by("id")
    rows: list[Row] = [{**dict.fromkeys(FEATURES), "id": 0, "n1": 1.0}]
    found = results(duckdb_backend, TABLE, rows, select)
    assert list(found[0])[:3] == ["id", "corrected:b1", "rs:status"]
    assert found[0]["corrected:b1"] is True
    clash = sa.select(TABLE, TABLE.c.b1.label("rs:status")).subquery("clash")
    with pytest.raises(ValueError, match="named twice: rs:status"):
        Screening([ruleset], clash, carry=["rs:status"]).verdicts()
