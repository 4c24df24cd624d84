"""`eligo synth --codings registry` (issue 20, item 6): the synthetic cohort as a registry
exports it, and the mapping that reads it back. The registry file is read here by the one cell
grammar (app/engine/cells.py) and the engine's unit converter, as the mapping says, and must
give cell for cell the plain cohort of the same seed; screening it is tested in
test_synth_screening.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from click.testing import CliRunner

from app.batch.mapping import load_mapping
from app.batch.synth import BLOCK, synthesize
from app.batch.synth_registry import (
    DX,
    KEY,
    columns,
    mapping,
    registry_batches,
    write_registry_csv,
)
from app.cli import synth as synth_cli
from app.engine import cells
from app.engine.inputs import normalise
from app.engine.model import Feature, RuleBase
from app.engine.unit_names import ucum
from app.engine.units import converter
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass  # independent of ELIGO_TEST_DATABASE

N = 3_000


@pytest.fixture(scope="module")
def features(shipped_rules: RuleBase) -> dict[str, Feature]:
    return shipped_rules.features


@pytest.fixture(scope="module")
def written(features: dict[str, Feature], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "registry.csv"
    write_registry_csv(N, features, path, seed=9)
    return path


def _text_table(path: Path) -> pa.Table:
    """The CSV as text, every cell as written (an empty cell is "", not null)."""
    header = path.open(encoding="utf-8").readline().strip().replace('"', "").split(",")
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
    )
    return pacsv.read_csv(path, convert_options=options)


def _read_back(table: pa.Table, mapping_text: str, features: dict[str, Feature]) -> list[Any]:
    """Each row's features as the mapping says to read them: cells by the cell grammar (its
    missing codes, decimal comma and values), units by the engine's converter; then
    `normalise`, as the API takes values. A cell that is a Problem fails the test."""
    spec = yaml.safe_load(mapping_text)
    declared = frozenset(str(code).casefold() for code in spec["missing"])
    rows = table.to_pylist()
    readers = []
    for fid, given in spec["columns"].items():
        entry: dict[str, Any] = {"column": given} if isinstance(given, str) else given
        grammar = cells.Grammar(
            missing=cells.DEFAULT_MISSING | declared,
            decimal_comma=entry.get("decimal") == ",",
            values={str(k): v for k, v in entry.get("values", {}).items()},
        )
        feature = features[fid]
        unit = entry.get("unit")
        linear = (
            converter(ucum(unit), feature.unit or "1", feature.spec.molar_mass) if unit else None
        )
        readers.append((fid, entry["column"], grammar, feature, linear))
    patients = []
    for number, row in enumerate(rows, start=2):
        raw: dict[str, Any] = {}
        for fid, column, grammar, feature, linear in readers:
            value = cells.read(row[column], feature.type, grammar)
            assert not isinstance(value, cells.Problem), (number, column, value)
            if isinstance(value, cells.Unknown):
                continue
            raw[fid] = linear(float(value)) if linear is not None else value
        patients.append((row[KEY], normalise(raw, features)))
    return patients


def test_the_registry_file_reads_back_as_the_plain_cohort(
    written: Path, features: dict[str, Feature]
) -> None:
    """Same seed, same patients: every value, and every unknown, of the plain cohort."""
    plain = [
        (row.pop("id"), normalise({k: v for k, v in row.items() if v is not None}, features))
        for row in synthesize(N, features, seed=9).to_pylist()
    ]
    assert _read_back(_text_table(written), mapping(features), features) == plain


def test_the_file_is_coded_as_a_registry_codes_it(
    written: Path, features: dict[str, Feature]
) -> None:
    table = _text_table(written)
    assert table.column_names[:5] == [KEY, "AGE", "SEX", DX, "SSC_SUBSET"]
    assert "ssc_diagnosis" not in table.column_names  # one DX column for both diagnoses
    assert {"CREA_umol", "HB_gL", "LVEF", "TAPSE_mm"} <= set(table.column_names)
    assert table.num_columns == len(features)  # the key, and DX for two features
    dx = Counter(table[DX].to_pylist())
    assert {"SSC", "SLE", "OTHER", "SSC+SLE"} <= set(dx)
    assert set(Counter(table["SEX"].to_pylist())) >= {"F", "M"}
    assert {"dcSSc", "lcSSc"} <= set(table["SSC_SUBSET"].to_pylist())
    assert set(table["ILD"].to_pylist()) == {"1", "2", "9", "", "NA"}  # SPSS yes/no
    every_cell = Counter(cell for name in table.column_names for cell in table[name].to_pylist())
    for code in ("", "NA", "n/a", "U", "-99", "9"):  # unknown, written many ways
        assert every_cell[code] > 100, code
    duration = [c for c in table["DIS_DUR_Y"].to_pylist() if "," in c]
    assert len(duration) > N / 2  # decimal commas
    creatinine = sorted(
        float(c.replace(",", ".")) for c in table["CREA_umol"].to_pylist() if c[:1].isdigit()
    )
    assert 50 < creatinine[len(creatinine) // 2] < 110  # µmol/L, not mg/dL
    assert "<1" in set(table["MRSS"].to_pylist())


def test_a_chunk_size_never_changes_the_file(features: dict[str, Feature]) -> None:
    """Unknown cells' codes are drawn per block as the patients are: a small cohort is the
    start of a large one and the chunk a writer streams in does not matter."""
    n = BLOCK + 700
    whole = pa.concat_tables(registry_batches(n, features, seed=4))
    assert pa.concat_tables(registry_batches(n, features, seed=4, chunk=1_000)).equals(whole)
    assert pa.concat_tables(registry_batches(500, features, seed=4)).equals(whole.slice(0, 500))
    assert not pa.concat_tables(registry_batches(500, features, seed=5)).equals(whole.slice(0, 500))


def test_a_catalogue_feature_gets_a_registry_column(features: dict[str, Feature]) -> None:
    """A feature the names table does not know gets an abbreviation of its id, unique."""
    extra = Feature(
        features["prior_cyclophosphamide_iv_g"].spec.model_copy(
            update={"id": "prior_cyclophosphamide_iv_gram"}
        )
    )
    names = [c.name for c in columns({**features, extra.id: extra})]
    assert names[-1] == "PRIO_CYCL_IV_GRAM"
    assert len(set(names)) == len(names)


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(synth_cli.synth, [*args, "--rules-dir", str(SHIPPED_RULES)])


def test_cli_writes_the_registry_and_its_mapping(
    tmp_path: Path, features: dict[str, Feature]
) -> None:
    out, mapping_out = tmp_path / "registry.csv", tmp_path / "mapping.yaml"
    result = _invoke(
        "--n", "400", "--seed", "2", "--codings", "registry", "--out", str(out),
        "--mapping-out", str(mapping_out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote the mapping that reads it to {mapping_out}" in result.stderr
    assert mapping_out.read_text(encoding="utf-8") == mapping(features, "registry.csv")
    loaded = load_mapping(mapping_out, features)  # as eligo screen --mapping reads it
    assert loaded.key == KEY
    assert set(loaded.wanted) == set(features)
    assert loaded.wanted["ssc_diagnosis"].column == loaded.wanted["sle_diagnosis"].column == DX
    expected = pa.concat_tables(registry_batches(400, features, seed=2))
    assert _text_table(out).to_pylist() == expected.to_pylist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mapping.yaml", "registry.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codings", "registry", "--out", "r.parquet"], "registry codings are written as CSV"),
        (["--out", "c.csv", "--mapping-out", "m.yaml"], "--mapping-out: the plain cohort"),
        (["--codings", "registry", "--out", "r.csv", "--mapping-out", "no/dir/m.yaml"], "no/dir"),
        (["--codings", "registry", "--out", "r.csv", "--mapping-out", "r.csv"], "own output"),
        (["--codings", "spss", "--out", "r.csv"], "--codings"),
    ],
)
def test_cli_refuses_bad_arguments_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("--n", "10", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []
