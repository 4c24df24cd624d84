"""Persistence: SQLAlchemy 2 models, sessions and repositories (tables arrive with the audit
trail; the metadata and its naming convention are fixed now so every migration uses them)."""
