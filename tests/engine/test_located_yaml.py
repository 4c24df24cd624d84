"""YAML merge keys in rule and vignette files: explicit keys win, positions stay true."""

from __future__ import annotations

from pathlib import Path

from app.engine.located_yaml import LocatedDocument, load_located


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
