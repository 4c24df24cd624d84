"""`loads_checked`'s fast path (orjson) against its strict path (`json` with hooks): the same
values, of the same types, and the same errors, for whatever a client may send."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import strict_json
from app.strict_json import Limits, loads_checked

LIMITS = Limits(depth=8, items=50)


def _tagged(value: Any) -> Any:
    """The value with every scalar's type beside it, floats by repr (-0.0 is not 0.0)."""
    if isinstance(value, dict):
        return ("dict", [(k, _tagged(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_tagged(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(parse: Callable[[], Any]) -> Any:
    try:
        return ("value", _tagged(parse()))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and Refused included
        return ("error", type(exc).__name__, str(exc))


def _both(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = _outcome(lambda: loads_checked(raw, LIMITS))
    with monkeypatch.context() as patched:
        patched.setattr(strict_json, "_plain", lambda *_: False)
        strict = _outcome(lambda: loads_checked(raw, LIMITS))
    return fast, strict


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=30,
)
# Numbers as a client may write them: long, signed, with fractions and exponents of any size.
number_texts = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"0|[1-9][0-9]{0,24}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,22}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(documents, st.sampled_from([(",", ":"), (", ", ": ")]))
def test_documents_parse_alike(document: Any, separators: tuple[str, str]) -> None:
    raw = json.dumps({"features": document}, separators=separators).encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, strict = _both(raw, monkeypatch)
    assert fast == strict


@settings(max_examples=600, deadline=None)
@given(st.lists(number_texts, min_size=1, max_size=5))
def test_numbers_parse_alike(numbers: list[str]) -> None:
    raw = ("[" + ",".join(numbers) + "]").encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, strict = _both(raw, monkeypatch)
    assert fast == strict


def _hostile() -> Iterator[bytes]:
    yield b'{"a": "\\u0000"}'  # NUL: refused, by name
    yield b'{"\\ud800": 1}'  # a lone surrogate in a key
    yield b'{"a": "\\udc00x"}'
    yield b'{"a": 1e400}'  # overflows a double
    yield b'{"a": 12345678901234567890}'  # 20 digits: a double, not an int
    yield b'{"a": 1234567890123456789}'  # 19
    yield b'{"a": 123456789012345678}'  # 18: an int
    yield b'{"a": NaN}'
    yield b'{"a": Infinity}'
    yield b'{"a": 1,}'
    yield b'\xef\xbb\xbf{"a": 1}'  # a byte order mark
    yield b'{"a": "\xff"}'  # not UTF-8
    yield b'{"a": "\xed\xa0\x80"}'  # a surrogate as UTF-8 bytes (the web form's surrogatepass)
    yield b'{"a": 1} {"b": 2}'
    yield b'{"a": [' + b",".join([b"1"] * 60) + b"]}"  # over the items limit
    yield b'{"a": [' + b",".join([b"1"] * 50) + b"]}"  # at it
    yield b'{"a": "' + b"," * 80 + b'"}'  # commas in a string: the strict path, the same value
    yield b"[[[[[[[[[1]]]]]]]]]"  # deeper than the limit
    yield b'{"a": 1, "a": 2}'  # the last one wins on both paths
    yield b'"just a string"'
    yield b""


@pytest.mark.parametrize("raw", list(_hostile()))
def test_hostile_bodies_are_refused_or_read_alike(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, strict = _both(raw, monkeypatch)
    assert fast == strict


def test_the_fast_path_is_the_one_an_ordinary_body_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Else the tests above compare the strict path with itself."""
    taken: list[bool] = []
    plain = strict_json._plain

    def spy(raw: bytes, limits: Limits) -> bool:
        taken.append(plain(raw, limits))
        return taken[-1]

    monkeypatch.setattr(strict_json, "_plain", spy)
    body = json.dumps({"features": {"age_years": 45, "lvef_percent": 55.5, "sex": "female"}})
    assert loads_checked(body.encode(), LIMITS) == {
        "features": {"age_years": 45, "lvef_percent": 55.5, "sex": "female"}
    }
    assert taken == [True]
    assert strict_json._plain(b'{"a": 12345678901234567890}', LIMITS) is False
    assert isinstance(loads_checked(b'{"a": 12345678901234567890}', LIMITS)["a"], float)
