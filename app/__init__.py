"""The entry points that wire the layers together: the `kwanus` command, the worker, the embedded
dev stack, the stewardship Schedule and the Temporal binaries the launchers run. Nothing imports
this package but `worker.py`, the tests and the bench."""
