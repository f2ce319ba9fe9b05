"""Benchmark ``data``: seconds per batch of ``DeviceData.train_batches`` against one SGD step.

Beside it, a torchvision Dataset + DataLoader pipeline doing the same augmentation on PIL images
(what torchvision's CIFAR10 does per sample), timed alike.
"""

from __future__ import annotations

import statistics
from typing import Any

from hgsearch.bench.harness import Benchmark, Scale, Target, interleave, paired_ratio, sync_for
from hgsearch.bench.workload import MEAN, STD, plain_optimizer, random_data, sgd_step


def bench_data(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Seconds per batch of DeviceData and of a torchvision DataLoader, against a step."""
    import torch
    from torch.utils.data import DataLoader

    from hgsearch.models import build_model

    data = random_data(scale.data_batches * scale.batch, runtime)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(PilDataset(data), batch_size=scale.batch, shuffle=True, drop_last=True,
                        num_workers=0, pin_memory=runtime.device.type == "cuda", generator=gen)
    memory = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = runtime.prepare(build_model(scale.arch, 10)).train()
    optimizer = plain_optimizer(model)
    x, y = next(data.train_batches(scale.batch, generator=gen))

    def device_epoch() -> None:
        for _ in data.train_batches(scale.batch, generator=gen):
            pass

    def loader_epoch() -> None:
        for xb, yb in loader:
            xb.to(runtime.device, non_blocking=True, memory_format=memory)
            yb.to(runtime.device, non_blocking=True)

    t = interleave({"device": device_epoch,
                    "step": lambda: sgd_step(model, optimizer, x, y, runtime),
                    "loader": loader_epoch}, rounds=scale.rounds, sync=sync_for(runtime.device))
    k = scale.data_batches
    per_batch = {name: [(w / k, c / k) for w, c in t[name]] for name in ("device", "loader")}
    step = [w for w, _ in t["step"]]
    figures = {
        "data_share_of_step": paired_ratio([w for w, _ in per_batch["device"]], step),
        "loader_share_of_step": paired_ratio([w for w, _ in per_batch["loader"]], step),
        "device_batch_s": statistics.median(w for w, _ in per_batch["device"]),
        "loader_batch_s": statistics.median(w for w, _ in per_batch["loader"]),
        "step_s": statistics.median(step),
        "speedup": paired_ratio([w for w, _ in per_batch["loader"]],
                                [w for w, _ in per_batch["device"]]),
        "speedup_cpu": paired_ratio([c for _, c in per_batch["loader"]],
                                    [c for _, c in per_batch["device"]]),
    }
    settings = {"arch": scale.arch, "batch": scale.batch, "batches_per_round": k,
                "loader": "torchvision RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, "
                          "Normalize on PIL images; DataLoader num_workers=0 (the in-process "
                          "cost of a batch), then .to(device)"}
    return {"settings": settings, "figures": figures}


class PilDataset:
    """What torchvision's CIFAR10 does per sample: a PIL image through the classic transforms."""

    def __init__(self, data: Any) -> None:
        from torchvision import transforms as T

        self.images = data.x.permute(0, 2, 3, 1).cpu().numpy()   # (N, H, W, 3)
        self.labels = data.y.cpu().tolist()
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                    T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _detail(f: dict[str, float]) -> str:
    return f"{1e3 * f['device_batch_s']:.3g} ms/batch vs step {f['step_s']:.3g} s; " \
           f"DataLoader {1e3 * f['loader_batch_s']:.3g} ms/batch " \
           f"({f['loader_share_of_step']:.2%} of a step)"


BENCHMARK = Benchmark("data", Target("data_share_of_step", "<=", 0.05), bench_data, _detail, """
    data_share_of_step: seconds per augmented, normalized batch from DeviceData.train_batches /
    seconds of one plain SGD step of the network on such a batch; speedup: loader seconds per
    batch / DeviceData seconds per batch""")
