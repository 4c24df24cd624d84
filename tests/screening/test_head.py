"""The bounded first look at a source (app/batch/head.py) and the request's check that
uses it (jobs.preflight): what is read is asserted in bytes, never in seconds."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.batch import head
from app.batch.backends import DuckDBBackend, SourceError
from app.batch.head import HeadError, Limits
from app.batch.mapping import MappingError, MappingFile, _Wanted
from app.batch.runner import Request
from app.engine.model import RuleBase
from app.services import screening_jobs as jobs

pytestmark = pytest.mark.one_pass

SMALL = Limits(columns=20, header_bytes=1024, sample_bytes=64 * 1024)


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of every read head makes."""
    sizes: list[int] = []

    class Counted(io.FileIO):
        def read(self, size: int | None = -1, /) -> bytes:
            data = super().read(size) or b""
            sizes.append(len(data))
            return data

    monkeypatch.setattr(head, "_opened", lambda path: Counted(path, "rb"))
    return sizes


def test_a_first_line_too_long_is_refused_having_read_one_chunk_past_the_limit(
    tmp_path: Path, read: list[int]
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"id," + b"x" * (8 * 1024 * 1024) + b"\np1,1\n")
    with pytest.raises(HeadError) as refused:
        head.check(path, "csv", SMALL)
    assert refused.value.code == "line_too_long"
    assert str(refused.value).startswith(
        f"{path}:1: the header (the first line) is longer than 1,024 bytes"
    )
    assert sum(read) <= SMALL.header_bytes + head.CHUNK
    ndjson = tmp_path / "r.ndjson"
    ndjson.write_bytes(b'{"id": "' + b"x" * 4096 + b'"}\n')
    with pytest.raises(HeadError, match=r"r\.ndjson:1: the first line is longer than 1,024"):
        head.check(ndjson, "ndjson", SMALL)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r", b""])
def test_the_first_line_ends_at_any_line_end(tmp_path: Path, end: bytes) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,age_years" + end + (b"p1,40" + end if end else b""))
    assert head.first_line(path, 1024) == b"id,age_years"


def test_columns_are_counted_by_the_delimiter_that_splits_most() -> None:
    assert head.csv_columns(b"id,age_years,lvef_percent") == 3
    assert head.csv_columns(b"id;age_years;lvef_percent") == 3
    assert head.csv_columns(b"id\tage_years") == 2
    assert head.csv_columns(b"id") == 1
    assert head.csv_columns(b"a,b;c;d") == 3  # a bound: the sniffer finds no more


def test_a_header_with_too_many_columns_is_refused_from_its_first_line(
    tmp_path: Path, read: list[int]
) -> None:
    path = tmp_path / "r.csv"
    header = ";".join(["id", *(f"c{i}" for i in range(20))]).encode() + b"\n"
    path.write_bytes(header + b"p1" + b";1" * 20 + b"\n" * 200_000)
    with pytest.raises(HeadError) as refused:
        head.check(path, "csv", SMALL)
    assert refused.value.code == "too_many_columns"
    assert str(refused.value).startswith(f"{path}:1: the header has 21 columns; a source may")
    assert sum(read) == head.CHUNK  # the first chunk, which holds the whole header


def test_the_sample_ends_with_a_whole_line_within_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    small = b"id\n" + b"p1\n" * 100
    path.write_bytes(small)
    assert head.sample(path, SMALL) is None  # the file itself is the sample
    path.write_bytes(b"id\n" + b"p12345\n" * 20_000)
    sample = head.sample(path, SMALL)
    assert sample is not None
    assert len(sample) <= SMALL.sample_bytes
    assert sample.endswith(b"p12345\n")
    assert len(sample) > SMALL.sample_bytes - len(b"p12345\n")


def test_ndjson_keys_are_counted_line_by_line_within_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    lines = [json.dumps({"id": "p0", "a": 1}), "", "not json", "[" * 5000, '"text"']
    lines += [json.dumps({"id": f"p{n}", f"k{n}": 1, f"j{n}": 2}) for n in range(1, 20)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HeadError) as refused:
        head.check(path, "ndjson", SMALL)
    # id, a, then two new keys a line from line 6: 22 by line 15 (the 10th object)
    assert str(refused.value).startswith(f"{path}:15: 22 different keys (columns) by this line")
    assert refused.value.code == "too_many_columns"
    head.check(path, "ndjson", Limits(columns=100))  # within limits: no error
    past = tmp_path / "past.ndjson"  # new keys only past the sample are not looked for
    filler = (json.dumps({"id": "p", "a": 1}) + "\n").encode() * 5000
    past.write_bytes(filler + b"\n".join(json.dumps({f"k{n}": 1}).encode() for n in range(50)))
    head.check(past, "ndjson", SMALL)


def test_a_parquet_file_is_judged_by_its_footer(tmp_path: Path) -> None:
    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{i}": [1] for i in range(21)}), wide)
    with pytest.raises(HeadError, match=r"wide\.parquet: the Parquet schema has 21 columns"):
        head.check(wide, "parquet", SMALL)
    groups = tmp_path / "groups.parquet"
    pq.write_table(pa.table({f"c{i}": list(range(600)) for i in range(10)}), groups, 1)
    with pytest.raises(HeadError) as refused:
        head.check(groups, "parquet", SMALL)
    assert refused.value.code == "metadata_too_large"
    assert "at most 65,536 are read (ELIGO_SCREENING_PREFLIGHT_BYTES)" in str(refused.value)
    fine = tmp_path / "fine.parquet"
    pq.write_table(pa.table({"id": ["p1"], "age_years": [40]}), fine)
    head.check(fine, "parquet", SMALL)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet PAR1")
    head.check(garbage, "parquet", SMALL)  # DuckDB names the defect


def test_the_first_long_line_is_found_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"id\n" + b"p1\n" * 300_000 + b"p" * 2_000_001 + b"\nlast\n")
    assert head.first_long_line(path, 2_000_000) == 300_002
    assert head.first_long_line(path, 2_000_001) is None
    tail = tmp_path / "tail.csv"
    tail.write_bytes(b"id\n" + b"x" * 3_000_000)  # the last line, without a line end
    assert head.first_long_line(tail, 2_000_000) == 2


def test_duckdb_is_given_nothing_a_header_check_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[str] = []
    monkeypatch.setattr(DuckDBBackend, "_view", lambda _, scan, __: scans.append(scan))
    path = tmp_path / "r.csv"
    path.write_text(",".join(f"c{i}" for i in range(21)) + "\n")
    engine = DuckDBBackend(SMALL)
    with pytest.raises(SourceError) as refused:
        engine.open(str(path))
    engine.close()
    assert refused.value.code == "too_many_columns"
    assert scans == []


# The request's check on a sample ----------------------------------------------------------


def _request(source: Path, mapping: MappingFile | None = None) -> Request:
    return Request(
        source=str(source),
        out=Path("unused.parquet"),
        mapping=mapping,
        rulesets=["hsct-ssc-astis"],
        as_of=date(2026, 12, 1),
        source_name=source.name,
        limits=SMALL,
    )


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What DuckDB was given to describe: the bytes of each file scanned."""
    seen: list[bytes] = []
    real = DuckDBBackend._view

    def view(self: DuckDBBackend, scan: str, name: str) -> Any:
        seen.append(Path(name).read_bytes())
        return real(self, scan, name)

    monkeypatch.setattr(DuckDBBackend, "_view", view)
    return seen


def test_a_large_csv_is_described_from_its_first_lines_only(
    tmp_path: Path, shipped_rules: RuleBase, scans: list[bytes]
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,age_years\n" + b"p1,40\n" * 100_000)
    jobs.preflight(_request(path), shipped_rules, scratch=tmp_path)
    (described,) = scans
    assert described.startswith(b"id,age_years\n")
    assert len(described) <= SMALL.sample_bytes
    assert not (tmp_path / "preflight-sample.csv").exists()


def test_a_sample_duckdb_cannot_read_falls_back_to_the_header(
    tmp_path: Path, shipped_rules: RuleBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []
    real = DuckDBBackend._view

    def view(self: DuckDBBackend, scan: str, name: str) -> Any:
        seen.append(Path(name).read_bytes())
        if len(seen) == 1:
            raise SourceError(f"{name}: Invalid Input Error: unterminated quotes")
        return real(self, scan, name)

    monkeypatch.setattr(DuckDBBackend, "_view", view)
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,age_years\n" + b"p1,40\n" * 100_000)
    jobs.preflight(_request(path), shipped_rules, scratch=tmp_path)
    assert seen[1] == b"id,age_years\n"
    assert not (tmp_path / "preflight-sample.csv").exists()


def test_a_large_csv_with_a_bad_header_is_refused_naming_the_file(
    tmp_path: Path, shipped_rules: RuleBase
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,NOPE\n" + b"p1,40\n" * 100_000)
    with pytest.raises(MappingError, match=r"r\.csv: column 'NOPE' is not a feature id"):
        jobs.preflight(_request(path), shipped_rules, scratch=tmp_path)
    assert not (tmp_path / "preflight-sample.csv").exists()


def test_ndjson_columns_past_the_sample_are_left_to_the_job(
    tmp_path: Path, shipped_rules: RuleBase
) -> None:
    """NDJSON keys first met past the sample may be there: a mapping naming one is not
    refused on the sample (the job says if it is missing)."""
    path = tmp_path / "r.ndjson"
    first = (json.dumps({"PATNO": "p", "AGE": 40}) + "\n").encode() * 5000
    path.write_bytes(first + json.dumps({"PATNO": "q", "AGE": 41, "LVEF": 55}).encode() + b"\n")
    features = shipped_rules.features
    mapping = MappingFile(
        key="PATNO",
        wanted={
            "age_years": _Wanted("AGE", None, {}, "m.yaml:3"),
            "lvef_percent": _Wanted("LVEF", None, {}, "m.yaml:4"),
        },
    )
    assert "lvef_percent" in features
    jobs.preflight(_request(path, mapping), shipped_rules, scratch=tmp_path)


def test_duckdb_errors_on_a_sample_name_the_source_not_the_copy(
    tmp_path: Path, shipped_rules: RuleBase
) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(b'{"id": "p0", "age_years": 40}\n' + b"{broken\n" + b"\n" * 100_000)
    with pytest.raises(SourceError) as refused:
        jobs.preflight(_request(path), shipped_rules, scratch=tmp_path)
    assert str(path) in str(refused.value)
    assert "preflight-sample" not in str(refused.value)


def test_duckdb_itself_refuses_a_deep_line(tmp_path: Path) -> None:
    """What head leaves to DuckDB (a line too deep for Python's parser) DuckDB refuses."""
    path = tmp_path / "deep.ndjson"
    path.write_text('{"id": "p", "a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    limits = Limits(columns=20, header_bytes=1024 * 1024)
    head.check(path, "ndjson", limits)
    engine = DuckDBBackend(limits)
    with pytest.raises(SourceError, match="maximum recursion depth"):
        engine.open(str(path))
    engine.close()
