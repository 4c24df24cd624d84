"""Screening test fixtures: one local Spark for the whole session (its JVM takes seconds to
start), and the DuckDB and Spark backends of the SQL agreement tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.batch.backends import spark_session
from tests.screening.backends import Backend, DuckDBBackend, SparkBackend


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def duckdb_backend() -> Iterator[Backend]:
    backend = DuckDBBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def spark_backend(spark: Any) -> Backend:
    return SparkBackend(spark)
