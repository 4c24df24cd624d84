"""Benchmark fixtures for the peer rule set of shared/docs/BENCHMARK.md.

    peer-hsct-ssc-astis.yaml  the rule set in Eligo's rule language (15 criteria)
    ruleset.py                its scratch rules directory (the catalogue without the safety
                              floor) and loading it
    handwritten.py            the same rule set as a hand-written Python function (the floor)
    floor_sql.py              the same rule set as one DuckDB query (the registry floor)
    cohort.py                 the peer cohort (JSONL and Parquet)

Kept out of rules/: nothing here is ever served. Importing this package imports nothing, so
`python -m benchmarks.peer.floor_sql` starts as fast as a one-file script.
"""
