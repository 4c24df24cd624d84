"""Batch evaluation of cohorts and registries."""
