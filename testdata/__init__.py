"""Test data shared by the tests and the bench: valid inputs to build on (`factories`)."""
