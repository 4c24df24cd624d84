"""Kleene's strong three-valued logic, checked against its truth tables and its key property."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.evaluate import truth
from app.engine.inputs import FeatureValue
from app.engine.model import All, AnyOf, Compare, Node, Not, Op

T, F, U = True, False, None
A = Compare("a", Op.EQ, True, "a")
B = Compare("b", Op.EQ, True, "b")

# The tables as textbooks print them: rows a, columns b, in the order T, F, U.
AND_TABLE = {
    (T, T): T,
    (T, F): F,
    (T, U): U,
    (F, T): F,
    (F, F): F,
    (F, U): F,
    (U, T): U,
    (U, F): F,
    (U, U): U,
}
OR_TABLE = {
    (T, T): T,
    (T, F): T,
    (T, U): T,
    (F, T): T,
    (F, F): F,
    (F, U): U,
    (U, T): T,
    (U, F): U,
    (U, U): U,
}
NOT_TABLE = {T: F, F: T, U: U}


def values(**given: bool | None) -> dict[str, FeatureValue]:
    return {k: FeatureValue(v, None, v, None) for k, v in given.items() if v is not None}


@pytest.mark.parametrize(("a", "b"), list(itertools.product([T, F, U], repeat=2)))
def test_and_or_tables(a: bool | None, b: bool | None) -> None:
    patient = values(a=a, b=b)
    assert truth(All((A, B)), patient) is AND_TABLE[a, b]
    assert truth(AnyOf((A, B)), patient) is OR_TABLE[a, b]


@pytest.mark.parametrize("a", [T, F, U])
def test_not_table(a: bool | None) -> None:
    assert truth(Not(A), values(a=a)) is NOT_TABLE[a]


def test_unknown_and_false_is_false_whatever_the_order() -> None:
    c = Compare("c", Op.EQ, True, "c")
    assert truth(All((A, B, c)), values(a=None, b=False, c=True)) is False
    assert truth(AnyOf((A, B, c)), values(a=None, b=True, c=False)) is True


FEATURES = ["a", "b", "c", "d"]


def trees() -> st.SearchStrategy[Node]:
    leaves = st.sampled_from(FEATURES).map(lambda f: Compare(f, Op.EQ, True, f))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=4).map(lambda c: All(tuple(c))),
            st.lists(children, min_size=1, max_size=4).map(lambda c: AnyOf(tuple(c))),
            children.map(Not),
        ),
        max_leaves=12,
    )


patients = st.fixed_dictionaries({f: st.sampled_from([True, False, None]) for f in FEATURES})


@given(trees(), patients, st.data())
def test_learning_a_value_never_overturns_a_known_result(
    node: Node, patient: dict[str, bool | None], data: st.DataObject
) -> None:
    """Kleene monotonicity: a decided criterion stays decided as unknowns are filled in.

    This is the property that makes `ineligible ... whatever else is unknown` safe.
    """
    before = truth(node, values(**patient))
    filled = {k: v if v is not None else data.draw(st.booleans()) for k, v in patient.items()}
    after = truth(node, values(**filled))
    assert after is not None
    if before is not None:
        assert after is before


@given(trees(), patients)
def test_matches_two_valued_logic_when_everything_is_known(
    node: Node, patient: dict[str, bool | None]
) -> None:
    known = {k: bool(v) for k, v in patient.items()}

    def classical(n: Node) -> bool:
        if isinstance(n, All):
            return all(classical(c) for c in n.children)
        if isinstance(n, AnyOf):
            return any(classical(c) for c in n.children)
        if isinstance(n, Not):
            return not classical(n.child)
        return known[n.feature]

    assert truth(node, values(**known)) is classical(node)
