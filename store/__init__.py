"""Persistence: SQLModel tables, the engine, typed repository functions, Alembic migrations."""
