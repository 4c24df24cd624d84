"""YAML loading that remembers where every value came from.

PyYAML's constructors discard positions, and silently keep the last of two duplicate keys.
Rule files are clinical documents where a duplicated `when:` would be a silent bug, so we
compose the node graph ourselves: plain Python data for validation, plus a side table from each
value's path (the same tuples pydantic reports in `loc`) to its 1-based line and column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.engine.diagnostics import Code, Diagnostic, Position

PathKey = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Span:
    """Where a scalar starts, and where its text starts inside the line (after a quote)."""

    line: int
    col: int
    text_col: int
    single_line: bool


@dataclass
class LocatedDocument:
    file: str
    data: Any
    spans: dict[PathKey, Span] = field(default_factory=dict)

    def position(self, path: PathKey, offset: int = 0) -> Position:
        """Position of `path`, or of its nearest located ancestor (a missing key's parent).

        `offset` is a character offset inside a single-line scalar, so an expression error
        can point at the offending token rather than the start of the string.
        """
        for end in range(len(path), -1, -1):
            span = self.spans.get(path[:end])
            if span is not None:
                if end == len(path) and span.single_line:
                    return Position(self.file, span.line, span.text_col + offset)
                return Position(self.file, span.line, span.col)
        return Position(self.file, 1, 1)


def _span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    quoted = isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')
    return Span(
        line=start.line + 1,
        col=start.column + 1,
        text_col=start.column + 1 + (1 if quoted else 0),
        single_line=start.line == end.line,
    )


class _Builder:
    def __init__(self, doc: LocatedDocument, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.diagnostics: list[Diagnostic] = []

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.spans[path] = _span(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        # Merges first, so the spans of explicit keys (built next) are the ones kept.
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = {**self._merged(value_node, path), **merged}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float) or key is None:
                key = str(key)
            if key in result:
                mark = key_node.start_mark
                self.diagnostics.append(
                    Diagnostic(
                        Code.DUPLICATE_KEY,
                        f"duplicate key {key!r}; the earlier value would be silently replaced",
                        Position(self.doc.file, mark.line + 1, mark.column + 1),
                    )
                )
                continue
            result[key] = self.build(value_node, (*path, key))
        # Explicit keys override merged ones; that is what `<<` is for, not a duplicate.
        return {**{k: v for k, v in merged.items() if k not in result}, **result}

    def _merged(self, node: yaml.Node, path: PathKey) -> dict[Any, Any]:
        """The values a `<<: *base` (or `<<: [*a, *b]`, earlier wins) merge key brings in."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                mark = source.start_mark
                raise yaml.MarkedYAMLError(
                    problem="a merge key (<<) needs a mapping or a list of mappings",
                    problem_mark=mark,
                )
            own_span = self.doc.spans.get(path)
            merged.update(self._mapping(source, path))
            if own_span is not None:
                self.doc.spans[path] = own_span
        return merged


def display_path(path: Path) -> str:
    """A path as diagnostics show it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def load_located(path: Path, display_name: str) -> tuple[LocatedDocument, list[Diagnostic]]:
    """Parse one YAML file; syntax errors come back as diagnostics, never as exceptions."""
    doc = LocatedDocument(file=display_name, data=None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return doc, [Diagnostic(Code.FILE_MISSING, f"cannot read file: {exc}", doc.position(()))]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return doc, []
        builder = _Builder(doc, loader)
        doc.data = builder.build(node, ())
        return doc, builder.diagnostics
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(display_name, mark.line + 1, mark.column + 1) if mark else doc.position(())
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return doc, [Diagnostic(Code.YAML_SYNTAX, message or "invalid YAML", pos)]
    except yaml.YAMLError as exc:
        return doc, [Diagnostic(Code.YAML_SYNTAX, str(exc), doc.position(()))]
    finally:
        loader.dispose()
