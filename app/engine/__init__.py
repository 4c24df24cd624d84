"""The rule language: load, validate, compile and evaluate rule sets.

Pure by design: nothing here imports FastAPI, a database session or anything else of `app`,
so the same engine serves the API, the CLI and (later) the batch screener.
"""
