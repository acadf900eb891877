"""Deterministic workflow code only: one governance process per module."""
