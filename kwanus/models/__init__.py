"""Payloads that cross Temporal: plain pydantic models (never SQLModel `table=True` objects),
carried by `pydantic_data_converter` on the worker, the API and the tests alike — one module per
process, and `common` for what they share."""
