"""The streaming benchmark: a tiny run reports finite figures of a real streamed training."""

from __future__ import annotations

import math

from PIL import Image

from hgsearch.bench.harness import TINY
from hgsearch.bench.streaming import bench_streaming, write_jpegs
from hgsearch.runtime import resolve_runtime


def test_tiny_streaming_bench(one_thread):
    section = bench_streaming(TINY, resolve_runtime("cpu"))
    f, s = section["figures"], section["settings"]
    assert all(math.isfinite(v) and v >= 0 for v in f.values()), f
    assert 0 <= f["stream_share_of_step"] < 1 and f["step_s"] > 0
    assert s["timed_steps"] == 2 and s["batch"] == 4 and s["workers"] >= 1


def test_bench_folder_is_an_imagefolder_of_photo_sized_jpegs(tmp_path):
    mean_bytes = write_jpegs(tmp_path, 3, size=(500, 375))
    files = sorted((tmp_path / "train").rglob("*.jpg"))
    assert len(files) == 3 and len(list((tmp_path / "val").rglob("*.jpg"))) == 10
    with Image.open(files[0]) as img:
        assert img.size == (500, 375) and img.format == "JPEG"
    assert 50_000 < mean_bytes < 250_000   # an ImageNet photo is about 110 kB
