"""Shared file helpers: atomic writes, strict JSON, UTC timestamps, the versions record.

Every result file hgsearch writes goes through ``atomic_path``: the bytes land under a
temporary name in the target's own folder (same filesystem, so the rename is atomic) and are
renamed over the target only once complete. A crash leaves the old file or the new one, never
half of one, and never a stray temporary file from a failed write.
"""

from __future__ import annotations

import json
import math
import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

# The packages whose versions decide what a result means (the versions record of rows,
# sweep.json and benchmark reports).
VERSIONED = ("hgsearch", "torch", "torchvision", "numpy", "ray", "optuna", "pandas", "pyarrow")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid + random: two processes (or threads) writing the same file never share a temp name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON allows: NaN and infinities become null, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return json_safe(value.item())   # a numpy or torch scalar
    return value


def json_text(data: Any, *, indent: int = 2) -> str:
    """Strict JSON (no NaN), one trailing newline."""
    return json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, data: Any, *, indent: int = 2) -> None:
    write_text_atomic(path, json_text(data, indent=indent))


def utc_now(timespec: str = "milliseconds") -> str:
    """The current time in UTC, ISO 8601 with its offset (``...+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Python's version and those of the packages in ``VERSIONED``."""
    return {"python": platform.python_version(), **{p: version_of(p) for p in VERSIONED}}


def versions_text() -> str:
    """``versions()`` on one line (``name=version, ...``), as a row's ``versions`` column."""
    return ", ".join(f"{k}={v}" for k, v in versions().items())
