"""YAML merge keys in rule and vignette files: explicit keys win, positions stay true."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.engine import located_yaml
from app.engine.located_yaml import LocatedDocument, load_located
from tests.conftest import SHIPPED_RULES


def _load(tmp_path: Path, text: str) -> tuple[object, list[str], LocatedDocument]:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    doc, diagnostics = load_located(path, "f.yaml")
    return doc.data, [str(d) for d in diagnostics], doc


def test_merge_keys_bring_values_and_explicit_keys_override(tmp_path: Path) -> None:
    data, diagnostics, doc = _load(
        tmp_path,
        "base: &base {a: 1, b: 2}\nx:\n  b: 3\n  <<: *base\ny: {<<: [{a: 5}, *base], c: 4}\n",
    )
    assert diagnostics == []
    assert data == {"base": {"a": 1, "b": 2}, "x": {"a": 1, "b": 3}, "y": {"a": 5, "b": 2, "c": 4}}
    assert str(doc.position(("x", "b"))) == "f.yaml:3:6"  # the override, not the anchor
    assert str(doc.position(("x", "a"))) == "f.yaml:1:17"  # where the merged value was written
    assert str(doc.position(("x",))) == "f.yaml:3:3"


def test_a_duplicate_explicit_key_is_still_reported_beside_a_merge(tmp_path: Path) -> None:
    _, diagnostics, _ = _load(tmp_path, "base: &base {a: 1}\nx:\n  <<: *base\n  a: 2\n  a: 3\n")
    assert diagnostics == [
        "f.yaml:5:3: error E002 duplicate-key: duplicate key 'a'; "
        "the earlier value would be silently replaced"
    ]


def test_merging_a_scalar_is_a_syntax_error(tmp_path: Path) -> None:
    _, diagnostics, _ = _load(tmp_path, "x:\n  <<: 5\n")
    assert diagnostics == [
        "f.yaml:2:7: error E001 yaml-syntax: a merge key (<<) needs a mapping or a list of mappings"
    ]


# Texts where libyaml, which reads rule files first, and PyYAML part ways; each must come out
# as PyYAML alone reads it (tests/golden holds the diagnostics users see).
DIVERGENT = [
    "- {i\td: a}\n",  # a tab inside a flow scalar: libyaml takes it
    "- {id: gui? deline-b, kind: x}\n",  # `?` inside a flow scalar: PyYAML ends it there
    "a: >#c\n  x\n",  # a block scalar header PyYAML refuses
    "a: {journal: , year: 2020}\n",  # an empty flow value: placed differently
    "!\n",  # a non-specific tag: null for PyYAML, '' for libyaml
    "x:\n  - id: a",  # no final line break: collections end elsewhere
    "a: b\r\nc: d\r\n",
    "%YAML 1.1\n---\na: 1\n",
    "\ufeffa: 1\n",
    "a: 1\n---\nb: 2\n",
    "a: [b\n",
    "a: \x07\n",
]


@pytest.mark.parametrize("text", DIVERGENT)
def test_libyaml_and_pyyaml_read_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    fast = _load(tmp_path, text)
    monkeypatch.setattr(located_yaml, "_FAST_LOADER", None)
    slow = _load(tmp_path, text)
    assert (fast[0], fast[1], fast[2].spans) == (slow[0], slow[1], slow[2].spans)


def test_a_deeply_nested_file_raises_recursion_error_and_does_not_crash(tmp_path: Path) -> None:
    """libyaml's own composer recurses in C and would crash the process (SIGSEGV)."""
    with pytest.raises(RecursionError):
        _load(tmp_path, "[" * 100_000 + "]" * 100_000 + "\n")


def test_the_shipped_rules_are_read_by_libyaml() -> None:
    """The fast reader is not silently bypassed: no shipped file trips a divergence check."""
    assert located_yaml._FAST_LOADER is not None
    for path in sorted(SHIPPED_RULES.rglob("*.yaml")):
        loader = located_yaml._FAST_LOADER(path.read_text(encoding="utf-8"))
        assert loader.get_single_node() is not None, path


# Pieces a rule author's slip might insert: YAML syntax, tabs, odd line breaks, tags, anchors.
_SLIPS = [*":-[]{}#&*!|>'\"%@`,?\n\t ~.0123456789ab\\=^$()/;", "é", "≥", "\u2028", "\x85"]
_SLIPS += ["\r\n", "\ufeff", "<<", "&a", "*a", "!!str ", "!!int ", "!", "- - ", "? ", ": "]


def _mutated(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        roll = rng.random()
        if roll < 0.35 and text:
            text = text[:at] + text[at + 1 :]
        elif roll < 0.8:
            text = text[:at] + rng.choice(_SLIPS) + text[at:]
        else:
            lines = text.split("\n")
            lines.insert(rng.randrange(len(lines)), rng.choice(lines))
            text = "\n".join(lines)
    return text


def test_mutated_rule_files_read_alike_with_and_without_libyaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A differential check (a longer run of it found no difference in 280,000 texts): slices
    of the shipped rule files with random slips give the same data, positions and diagnostics
    whichever reader goes first. A rule value read differently would be a threshold changed."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(SHIPPED_RULES.rglob("*.yaml"))]
    rng = random.Random(20261202)
    for _ in range(1500):
        lines = rng.choice(texts).split("\n")
        start = rng.randrange(len(lines))
        text = _mutated("\n".join(lines[start : start + rng.randint(1, 30)]), rng)
        text += "\n" if rng.random() < 0.9 else ""
        fast = _outcome(tmp_path, text)
        with monkeypatch.context() as patched:
            patched.setattr(located_yaml, "_FAST_LOADER", None)
            slow = _outcome(tmp_path, text)
        assert fast == slow, text


def _outcome(tmp_path: Path, text: str) -> tuple[object, ...]:
    try:
        data, diagnostics, doc = _load(tmp_path, text)
    except RecursionError:
        return ("recursion",)
    return (repr(data), [str(d) for d in diagnostics], sorted(doc.spans.items(), key=repr))


@pytest.mark.parametrize("text", ["year: !!int alexander-2025\n", "a: !!float x\n", "!!int q: 1\n"])
def test_a_value_its_explicit_tag_does_not_fit_is_a_diagnostic(tmp_path: Path, text: str) -> None:
    """Found by the differential check: PyYAML raised ValueError out of the loader."""
    data, diagnostics, _ = _load(tmp_path, text)
    assert data is None
    (message,) = diagnostics
    assert message.startswith("f.yaml:1:")
    assert "E001 yaml-syntax" in message
    assert "cannot be read as" in message
