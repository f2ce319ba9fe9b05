"""Benchmark ``streaming``: the streaming data path's share of a ResNet-50 training step.

The benchmark writes an image folder of ImageNet-like JPEGs (500 x 375, textured, about 100 kB
each) to a temporary folder, loads it with ``data_path=stream`` (one decoding worker per core
the process may use, ``data_workers=0``) and trains torchvision's ResNet-50 (``weights=None``)
on its batches at 224 px, as a trial's training loop takes them. Per step it times the wait for
the next batch (decoding not hidden behind the step, plus the copy and normalization) and the
SGD step; the headline is wait / (wait + step) over the steps after the first (the first waits
for the workers to start). Beside it, how many images per second the workers decode with no
training beside them: what a GPU step would have to stay above.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hgsearch.bench.harness import QUICK, TINY, Benchmark, Scale, Target, sync_for
from hgsearch.bench.workload import plain_optimizer, sgd_step

# (images per step, image side, timed steps, source JPEG width x height) per scale and device
SIZES = {
    "tiny": (4, 64, 2, (96, 72)),
    "quick": (16, 224, 3, (500, 375)),
    "full": (32, 224, 6, (500, 375)),
    "full-cuda": (128, 224, 20, (500, 375)),
}
CLASSES = 10


def sizes_for(scale: Scale, device: str) -> tuple[int, int, int, tuple[int, int]]:
    if scale == TINY:
        return SIZES["tiny"]
    if scale == QUICK:
        return SIZES["quick"]
    return SIZES["full-cuda" if device == "cuda" else "full"]


def write_jpegs(root: Path, n: int, *, size: tuple[int, int], seed: int = 0) -> int:
    """``n`` training JPEGs over ``CLASSES`` class folders and one val image per class; their
    mean size in bytes. Smooth colour fields plus noise: about the bytes per pixel of a photo."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    total = 0
    for split, count in (("train", n), ("val", CLASSES)):
        for i in range(count):
            folder = root / split / f"c{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
            base = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((w, h),
                                                                             Image.BICUBIC))
            img = np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{i:05d}.jpg"
            Image.fromarray(img).save(path, quality=90)
            total += path.stat().st_size if split == "train" else 0
    return total // max(n, 1)


def bench_streaming(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Wait for the next streamed batch against a ResNet-50 SGD step on it."""
    import torch
    from torchvision.models import resnet50

    from hgsearch.config import make_config
    from hgsearch.data import load_dataset

    batch, side, steps, source = sizes_for(scale, runtime.device.type)
    sync = sync_for(runtime.device)
    with tempfile.TemporaryDirectory(prefix="hgsearch-stream-bench-") as tmp:
        root = Path(tmp) / "folder"
        t0 = time.perf_counter()
        needed = (steps + 1) * batch        # training images: one epoch is the run
        extra = max(CLASSES, -(-needed // 100) + 1)   # the validation split, >= 1% of all
        jpeg_bytes = write_jpegs(root, needed + extra, size=source)
        seconds_write = time.perf_counter() - t0
        cfg = make_config({"dataset": "imagefolder", "data_dir": str(root), "image_size": side,
                           "data_path": "stream", "data_workers": 0,
                           "val_fraction": extra / (needed + extra),
                           "device": runtime.device.type, "cache_dir": str(Path(tmp) / "c")})
        t0 = time.perf_counter()
        data = load_dataset(cfg)
        seconds_setup = time.perf_counter() - t0
        train = data.device_splits(runtime)["train"]
        model = runtime.prepare(resnet50(weights=None, num_classes=CLASSES)).train()
        optimizer = plain_optimizer(model)
        gen = torch.Generator().manual_seed(0)
        waits, step_s = [], []
        batches = train.train_batches(batch, generator=gen)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            sync()
            t1 = time.perf_counter()
            sgd_step(model, optimizer, x, y, runtime)
            sync()
            waits.append(t1 - t0)
            step_s.append(time.perf_counter() - t1)
        t0 = time.perf_counter()
        seen = sum(len(yb) for _, yb in train.train_batches(batch, generator=gen))
        sync()
        loader_rate = seen / (time.perf_counter() - t0)
    wait, step = sum(waits[1:]), sum(step_s[1:])
    figures = {
        "stream_share_of_step": wait / (wait + step),
        "wait_s": statistics.median(waits[1:]),
        "step_s": statistics.median(step_s[1:]),
        "first_wait_s": waits[0],
        "loader_images_per_s": loader_rate,
        "step_images_per_s": batch / statistics.median(step_s[1:]),
    }
    settings = {"model": "torchvision resnet50(weights=None)", "batch": batch,
                "image_size": side, "timed_steps": len(waits) - 1,
                "source_jpeg": f"{source[0]}x{source[1]}, quality 90, mean {jpeg_bytes} bytes",
                "workers": data.workers, "torch_threads": torch.get_num_threads(),
                "seconds_write": seconds_write, "seconds_setup": seconds_setup,
                "recipe": "RandomResizedCrop(224) + RandomHorizontalFlip on PIL, DataLoader "
                          "with persistent workers and pinned memory on CUDA"}
    return {"settings": settings, "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return (f"wait {1e3 * f['wait_s']:.3g} ms vs ResNet-50 step {f['step_s']:.3g} s; workers "
            f"decode {f['loader_images_per_s']:.3g} img/s, the step takes "
            f"{f['step_images_per_s']:.3g} img/s")


BENCHMARK = Benchmark("streaming", Target("stream_share_of_step", "<=", 0.10), bench_streaming,
                      _detail, """
    stream_share_of_step: seconds waiting for the next streamed batch (224 px JPEGs decoded and
    augmented by the DataLoader workers, copied, normalized) / seconds of waiting plus one
    ResNet-50 SGD step on the batch, summed over the steps after the first;
    loader_images_per_s: what the workers decode with no training beside them""")
