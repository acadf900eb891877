"""KWANUS Partner Governance: process-independent plumbing (settings, Temporal contract, CLI)."""
