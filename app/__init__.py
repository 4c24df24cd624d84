"""Eligo: therapy-eligibility decision support for cellular therapies in SSc and SLE."""

__version__ = "0.1.0"
