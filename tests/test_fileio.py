"""The shared file helpers: an atomic write leaves the old file or the new one, never half."""

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest

from hgsearch.fileio import (
    atomic_path,
    json_safe,
    utc_now,
    versions,
    write_json_atomic,
    write_text_atomic,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "rows.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]


def test_write_lands_whole_and_creates_the_folder(tmp_path):
    target = tmp_path / "a" / "b" / "report.json"
    write_json_atomic(target, {"x": [1.5, float("nan"), float("inf")], "n": np.float32(2.0)})
    assert json.loads(target.read_text()) == {"x": [1.5, None, None], "n": 2.0}
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_json_safe_is_strict_json():
    out = json_safe({"t": (1, float("-inf")), "z": np.array(3.0), "ok": math.pi})
    assert out == {"t": [1, None], "z": 3.0, "ok": math.pi}
    json.dumps(out, allow_nan=False)


def test_utc_now_is_utc_and_parses():
    stamp = datetime.fromisoformat(utc_now())
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 5


def test_versions_names_python_and_torch():
    record = versions()
    assert record["python"].count(".") == 2
    import torch
    assert record["torch"] in (torch.__version__, torch.__version__.split("+")[0])
