"""What the quality benchmark's parts share: the synthetic splits on the device, validation
accuracy, and a pool of one-thread worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def device_splits(data: Any, runtime: Any) -> dict[str, Any]:
    """``data``'s train, val and test splits as ``DeviceData`` on ``runtime``'s device."""
    from hgsearch.data import DeviceData

    return {s: DeviceData(getattr(data, f"{s}_x"), getattr(data, f"{s}_y"), mean=data.mean,
                          std=data.std, device=runtime.device,
                          channels_last=runtime.channels_last)
            for s in ("train", "val", "test")}


def accuracy(net: Any, split: Any, cfg: Any, runtime: Any) -> float:
    """Top-1 accuracy of ``net`` on ``split`` in batches of ``cfg.eval_batch_size``."""
    from hgsearch.train import evaluate

    return evaluate(net, split.eval_batches(cfg.eval_batch_size), runtime)[1]


def in_processes(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int
                 ) -> Iterator[tuple[tuple, Any]]:
    """(task, ``fn(*task)``) for each task as it finishes: in this process when ``jobs`` <= 1,
    else in ``jobs`` spawned processes of one thread each (a CPU core each)."""
    if jobs <= 1:
        for task in tasks:
            yield task, fn(*task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker (fork would copy torch's thread pools).
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        futures = {pool.submit(fn, *task): task for task in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
