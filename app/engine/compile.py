"""Compile criterion expressions into the typed rule tree, checked against the catalogue.

This is where a threshold written as `8 kPa` becomes `60.00… mm[Hg]`, where `lvef < 45 mg`
becomes a unit diagnostic, and where `age_years < 150` is refused because no patient in the
catalogue's plausible range could ever make it false.
"""

from __future__ import annotations

import difflib
from typing import Any

from app.engine.diagnostics import Code, Diagnostic
from app.engine.expr import BoolOp, ExprSyntaxError, Literal, NotOp, Predicate, Syntax, parse
from app.engine.located_yaml import LocatedDocument, PathKey
from app.engine.model import All, AnyOf, Between, Compare, Feature, In, Node, Not, Op
from app.engine.schema import FeatureType
from app.engine.units import UnitError, converter

_ORDERING = {Op.LT, Op.LE, Op.GT, Op.GE}


class _Invalid(Exception):
    """One diagnostic for the predicate at hand; compilation continues with the next one."""

    def __init__(self, code: Code, message: str, offset: int) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


class ExpressionCompiler:
    def __init__(
        self, doc: LocatedDocument, features: dict[str, Feature], diagnostics: list[Diagnostic]
    ) -> None:
        self.doc = doc
        self.features = features
        self.diagnostics = diagnostics

    def compile(self, raw: Any, path: PathKey) -> Node | None:
        """Compile a `when:` value (text, or an all/any/not mapping); None after a diagnostic."""
        if isinstance(raw, str):
            return self._text(raw, path)
        if isinstance(raw, dict) and len(raw) == 1:
            ((key, value),) = raw.items()
            if key in ("all", "any") and isinstance(value, list) and value:
                children = [self.compile(item, (*path, key, i)) for i, item in enumerate(value)]
                if any(child is None for child in children):
                    return None
                nodes = tuple(c for c in children if c is not None)
                return All(nodes) if key == "all" else AnyOf(nodes)
            if key == "not":
                child = self.compile(value, (*path, key))
                return None if child is None else Not(child)
        self._error(
            Code.EXPR_SYNTAX,
            "expected an expression: text, or a mapping with one key "
            "`all: [...]`, `any: [...]` or `not: ...`",
            path,
            0,
        )
        return None

    def _text(self, text: str, path: PathKey) -> Node | None:
        try:
            syntax = parse(text)
        except ExprSyntaxError as exc:
            self._error(Code.EXPR_SYNTAX, str(exc), path, exc.offset)
            return None
        return self._syntax(syntax, path)

    def _syntax(self, syntax: Syntax, path: PathKey) -> Node | None:
        if isinstance(syntax, NotOp):
            child = self._syntax(syntax.child, path)
            return None if child is None else Not(child)
        if isinstance(syntax, BoolOp):
            children = [self._syntax(child, path) for child in syntax.children]
            if any(child is None for child in children):
                return None
            nodes = tuple(c for c in children if c is not None)
            return All(nodes) if syntax.op == "and" else AnyOf(nodes)
        try:
            return self._predicate(syntax)
        except _Invalid as exc:
            self._error(exc.code, str(exc), path, exc.offset)
            return None

    def _error(self, code: Code, message: str, path: PathKey, offset: int) -> None:
        self.diagnostics.append(Diagnostic(code, message, self.doc.position(path, offset)))

    def _predicate(self, pred: Predicate) -> Node:
        feature = self.features.get(pred.feature)
        if feature is None:
            close = [f for f in self.features if f.startswith(pred.feature)][:1] or (
                difflib.get_close_matches(pred.feature, self.features, n=1)
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Invalid(
                Code.UNKNOWN_FEATURE, f"unknown feature {pred.feature!r}{hint}", pred.offset
            )
        if feature.type is FeatureType.NUMBER:
            return self._number(feature, pred)
        if feature.type is FeatureType.BOOLEAN:
            return self._boolean(feature, pred)
        return self._enum(feature, pred)

    def _number(self, feature: Feature, pred: Predicate) -> Node:
        if pred.op == "in":
            raise _Invalid(
                Code.TYPE_MISMATCH,
                f"{feature.id!r} is a number: use a comparison or 'between'",
                pred.offset,
            )
        if pred.op == "==" and pred.args[0].value is True:
            raise _Invalid(
                Code.TYPE_MISMATCH,
                f"{feature.id!r} is a number, not a yes/no feature: compare it",
                pred.offset,
            )
        values = [self._threshold(feature, literal) for literal in pred.args]
        if pred.op == "between":
            low, high = values
            if low > high:
                raise _Invalid(
                    Code.EMPTY_RANGE,
                    f"'between {low:g} and {high:g}' is empty",
                    pred.args[0].offset,
                )
            return Between(feature.id, low, high, pred.text)
        return Compare(feature.id, Op(pred.op), values[0], pred.text)

    def _threshold(self, feature: Feature, literal: Literal) -> float:
        value = literal.value
        if isinstance(value, bool) or not isinstance(value, float):
            raise _Invalid(
                Code.TYPE_MISMATCH, f"{feature.id!r} is a number; {value!r} is not", literal.offset
            )
        unit = feature.unit or "1"
        if literal.unit is not None and literal.unit != unit:
            try:
                value = converter(literal.unit, unit, feature.spec.molar_mass)(value)
            except UnitError as exc:
                raise _Invalid(
                    Code.UNIT,
                    f"threshold for {feature.id!r} (unit {unit!r}): {exc}",
                    literal.unit_offset,
                ) from None
        low, high = feature.spec.range or (float("-inf"), float("inf"))
        if not low <= value <= high:
            raise _Invalid(
                Code.THRESHOLD_RANGE,
                f"threshold {value:g} {unit} is outside the plausible range of "
                f"{feature.id!r} ({low:g}–{high:g} {unit})",
                literal.offset,
            )
        return value

    def _boolean(self, feature: Feature, pred: Predicate) -> Node:
        if pred.op not in ("==", "!=") or not isinstance(pred.args[0].value, bool):
            raise _Invalid(
                Code.TYPE_MISMATCH,
                f"{feature.id!r} is yes/no: write '{feature.id}', "
                f"'not {feature.id}' or '{feature.id} is false'",
                pred.offset,
            )
        return Compare(feature.id, Op(pred.op), pred.args[0].value, pred.text)

    def _enum(self, feature: Feature, pred: Predicate) -> Node:
        allowed = feature.spec.values or []
        if pred.op not in ("==", "!=", "in"):
            raise _Invalid(
                Code.TYPE_MISMATCH,
                f"{feature.id!r} is one of {allowed}: use '==', '!=' or 'in'",
                pred.offset,
            )
        for literal in pred.args:
            if not isinstance(literal.value, str) or literal.value not in allowed:
                raise _Invalid(
                    Code.UNKNOWN_ENUM_VALUE,
                    f"{literal.value!r} is not a value of {feature.id!r} "
                    f"(allowed: {', '.join(allowed)})",
                    literal.offset,
                )
        values = tuple(str(literal.value) for literal in pred.args)
        if pred.op == "in":
            return In(feature.id, values, pred.text)
        return Compare(feature.id, Op(pred.op), values[0], pred.text)


def render(node: Node) -> str:
    """Text form of a compiled tree, for criteria written as all/any/not mappings."""
    if isinstance(node, All | AnyOf):
        joiner = " and " if isinstance(node, All) else " or "
        return joiner.join(_wrapped(child) for child in node.children)
    if isinstance(node, Not):
        return f"not {_wrapped(node.child)}"
    return node.text


def _wrapped(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, All | AnyOf) else render(node)
