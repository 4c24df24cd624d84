"""YAML loading that remembers where every value came from.

PyYAML's constructors discard positions, and silently keep the last of two duplicate keys.
Rule files are clinical documents where a duplicated `when:` would be a silent bug, so we
compose the node graph ourselves: plain Python data for validation, plus a side table from each
value's path (the same tuples pydantic reports in `loc`) to its 1-based line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.reader import Reader
from yaml.resolver import Resolver

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


class _Loader(Protocol):
    """What the builder needs of a loader: PyYAML's own, or the libyaml-backed one below."""

    def get_single_node(self) -> yaml.Node | None: ...
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any: ...
    def dispose(self) -> None: ...


_N = TypeVar("_N", bound=yaml.Node)


class _Diverges(yaml.YAMLError):
    """The text holds something libyaml reads differently from PyYAML."""


# Texts read by PyYAML alone. Reading mutated rule files with both parsers, they part ways on
# tabs (libyaml takes them in more places) and on a last line without its line break (where
# collections ending there end); line breaks other than \n, a byte-order mark, directives
# (%YAML) and characters PyYAML refuses agreed, but are rare in rule files and kept away too.
_PYYAML_ONLY = re.compile("[\t\r\x85\u2028\u2029\ufeff]|^%", re.MULTILINE)


def _libyaml_reads_alike(text: str) -> bool:
    return (
        text.endswith("\n")
        and _PYYAML_ONLY.search(text) is None
        and Reader.NON_PRINTABLE.search(text) is None
    )


# A block scalar's header as PyYAML reads it (libyaml also takes `>#c`, say), after the
# anchor that may precede it on its line.
_BLOCK_HEADER = re.compile(r"(?:&[0-9A-Za-z_-]+ +)?[|>](?:[+-][1-9]?|[1-9][+-]?)?(?: +(?:#.*)?)?")


def _check_event(event: object, in_flow: bool, text: str) -> None:
    """Raise _Diverges on an event PyYAML may not give for the same text: an explicit tag (`!`
    is resolved differently), a block scalar header PyYAML refuses, and, inside [...] or
    {...}, a plain scalar that is empty (placed differently) or holds a `?` (PyYAML ends it
    there)."""
    if getattr(event, "tag", None) is not None:
        raise _Diverges
    if not isinstance(event, yaml.ScalarEvent):
        return
    value: str = event.value
    if event.style in ("|", ">"):
        mark = event.start_mark  # its index counts characters, as PyYAML's does
        line_end = text.find("\n", mark.index) if mark else -1
        if mark is None or not _BLOCK_HEADER.fullmatch(text, mark.index, line_end):
            raise _Diverges
    elif in_flow and not event.style and (not value or "?" in value):
        raise _Diverges


def _libyaml_loader() -> Callable[[str], _Loader] | None:
    """A loader whose events come from libyaml (PyYAML's C extension), composed and
    constructed by PyYAML's Python code; None when PyYAML was built without libyaml.

    libyaml scans the shipped rules about ten times faster than PyYAML's pure-Python scanner,
    and for the texts it is given here its events (values, tags, positions) are PyYAML's.
    Composing stays in Python: libyaml's own composer recurses in C, and a deeply nested file
    would crash the process instead of raising RecursionError.
    """
    try:
        from yaml._yaml import CParser  # noqa: PLC0415 - optional part of PyYAML
    except ImportError:
        return None

    class LibyamlLoader(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            if not _libyaml_reads_alike(stream):
                raise _Diverges
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self.text = stream
            self.flow_level = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            _check_event(self.peek_event(), self.flow_level > 0, self.text)
            return super().compose_node(parent, index)

        def compose_sequence_node(self, anchor: dict[Any, yaml.Node]) -> yaml.SequenceNode:
            return self._counting_flow(super().compose_sequence_node, anchor)

        def compose_mapping_node(self, anchor: dict[Any, yaml.Node]) -> yaml.MappingNode:
            return self._counting_flow(super().compose_mapping_node, anchor)

        def _counting_flow(self, compose: Callable[[Any], _N], anchor: dict[Any, yaml.Node]) -> _N:
            """Compose a collection, counting the [...] and {...} it is inside."""
            flow = int(bool(getattr(self.peek_event(), "flow_style", False)))
            self.flow_level += flow
            try:
                return compose(anchor)
            finally:
                self.flow_level -= flow

    return LibyamlLoader


_FAST_LOADER = _libyaml_loader()


class _Builder:
    def __init__(self, doc: LocatedDocument, loader: _Loader) -> None:
        self.doc = doc
        self.loader = loader
        self.diagnostics: list[Diagnostic] = []

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.spans[path] = _span(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        """A scalar's value. An explicit tag it does not fit (`!!int abc`, `!!float x`) makes
        PyYAML raise ValueError and the like, not a YAML error: a diagnostic at the node too."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.MarkedYAMLError(
                problem=f"{node.value!r} cannot be read as {tag} ({exc})",
                problem_mark=node.start_mark,
            ) from None

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
            key = self._construct(key_node)
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
    # libyaml words its errors, and places some, differently from PyYAML: a file it rejects
    # (or nests too deeply) is read again by PyYAML alone, so the diagnostics stay the ones
    # users and the golden files know.
    if _FAST_LOADER is not None:
        try:
            return _build(_FAST_LOADER, text, doc)
        except (yaml.YAMLError, RecursionError):
            doc = LocatedDocument(file=display_name, data=None)  # not what the first pass left
    try:
        return _build(yaml.SafeLoader, text, doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(display_name, mark.line + 1, mark.column + 1) if mark else doc.position(())
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return doc, [Diagnostic(Code.YAML_SYNTAX, message or "invalid YAML", pos)]
    except yaml.YAMLError as exc:
        return doc, [Diagnostic(Code.YAML_SYNTAX, str(exc), doc.position(()))]


def _build(
    make_loader: Callable[[str], _Loader], text: str, doc: LocatedDocument
) -> tuple[LocatedDocument, list[Diagnostic]]:
    """Compose `text` into `doc`; YAML errors propagate."""
    loader = make_loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return doc, []
        builder = _Builder(doc, loader)
        doc.data = builder.build(node, ())
        return doc, builder.diagnostics
    finally:
        loader.dispose()
