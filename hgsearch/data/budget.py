"""Which data path a trial takes: the decoded images in memory, or streamed from their files.

The in-memory path holds every decoded image, train + val + test, N x 3 x S x S bytes (uint8),
on the training device. It is taken when that fits the memory budget:

- ``data_memory_gb`` (decimal GB) when set;
- else half of the memory the system reports available when the trial starts (``MemAvailable``
  in /proc/meminfo, else the free physical pages), since loading briefly holds two copies
  (the decoded files, then the carved splits); on CUDA also at most half of the GPU's free memory,
  where the splits then live beside the network.

``data_path`` (auto | memory | stream) forces either. Only imagefolder can stream; the other
datasets are always in memory (CIFAR and TinyImageNet fit in a few GB).
"""

from __future__ import annotations

import os

from hgsearch.config import TrialConfig
from hgsearch.errors import UserError

STREAMABLE = ("imagefolder",)


def decoded_bytes(n_images: int, size: int) -> int:
    """Bytes of ``n_images`` decoded uint8 images of ``size`` x ``size`` RGB."""
    return n_images * 3 * size * size


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable), now."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(cfg: TrialConfig) -> int:
    """Bytes the decoded dataset may take on the in-memory path (see the module's text)."""
    if cfg.data_memory_gb > 0:
        return int(cfg.data_memory_gb * 1e9)
    budget = available_memory() // 2
    if cfg.device != "cpu":
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            budget = min(budget, free // 2)
    return budget


def choose_path(cfg: TrialConfig, n_images: int) -> str:
    """"memory" or "stream" for ``n_images`` of ``cfg.dataset`` at ``cfg.image_size``."""
    if cfg.data_path == "stream" and cfg.dataset not in STREAMABLE:
        raise UserError(f"data_path=stream: dataset={cfg.dataset} is always held in memory; "
                        f"only {', '.join(STREAMABLE)} can stream")
    if cfg.dataset not in STREAMABLE or cfg.data_path == "memory":
        return "memory"
    if cfg.data_path == "stream":
        return "stream"
    fits = decoded_bytes(n_images, cfg.image_size) <= memory_budget(cfg)
    return "memory" if fits else "stream"
