"""Training throughput per precision, memory format and compile; the data path's share of a step.

Each variant trains with ``hgsearch.train.train``, exactly as a trial does: DeviceData batches
(random crop and flip on the device), the trial's default HGSR penalty, the lr schedule, loss
sums and divergence checks. One call is one epoch of ``train_steps`` steps on random images.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from hgsearch.bench.harness import FULL, interleave, paired_ratio, sync_for
from hgsearch.bench.workload import penalty_text, random_data, trial_recipe

# variant -> (precision, channels_last, torch.compile): the trial keys of the same names
VARIANTS: dict[str, tuple[str, str, bool]] = {
    "fp32": ("fp32", "off", False),
    "bf16_cl": ("bf16", "on", False),
    "bf16_cl_compile": ("bf16", "on", True),
}


def epoch_runner(arch: str, batch: int, steps: int, runtime: Any, *,
                 compile_backend: str | None = None) -> Any:
    """A function that trains one epoch of ``steps`` SGD steps and returns its record."""
    import torch

    from hgsearch.models import build_model
    from hgsearch.train import train

    settings, penalty = trial_recipe(batch)
    data = random_data(steps * batch, runtime)
    model = runtime.prepare(build_model(arch, 10)).train()
    # dynamic=False: each batch size gets its own static graph, as a trial's one batch size does
    step_model = None
    if compile_backend:
        step_model = torch.compile(model, backend=compile_backend, dynamic=False)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> dict[str, Any]:
        return train(model, data, settings=settings, runtime=runtime, generator=gen,
                     penalty=penalty, log=None, step_model=step_model)[-1]

    return epoch


def bench_training(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Images/s of every VARIANTS entry at every batch size, timed side by side."""
    import torch

    from hgsearch.runtime import resolve_runtime

    device = runtime.device.type
    sync = sync_for(runtime.device)
    calls, warmup_s = {}, {}
    for batch in scale.train_batches:
        for variant, (precision, last, compiled) in VARIANTS.items():
            name = f"b{batch}_{variant}"
            rt = resolve_runtime(device, precision, last)
            calls[name] = epoch_runner(scale.arch, batch, scale.train_steps, rt,
                                       compile_backend=scale.compile_backend if compiled
                                       else None)
            sync()
            t0 = time.perf_counter()
            calls[name]()   # the warm-up epoch: compiles, when the variant compiles
            sync()
            warmup_s[name] = time.perf_counter() - t0
            log(f"  {name}: warm-up epoch {warmup_s[name]:.1f} s")
    times = interleave(calls, rounds=scale.train_rounds, warmup=0, sync=sync)
    figures: dict[str, float] = {}
    for batch in scale.train_batches:
        images = batch * scale.train_steps
        walls = {v: [w for w, _ in times[f"b{batch}_{v}"]] for v in VARIANTS}
        for variant in VARIANTS:
            figures[f"b{batch}_{variant}_images_per_s"] = images / statistics.median(
                walls[variant])
        figures[f"b{batch}_bf16_cl_speedup"] = paired_ratio(walls["fp32"], walls["bf16_cl"])
        figures[f"b{batch}_compile_speedup"] = paired_ratio(walls["bf16_cl"],
                                                            walls["bf16_cl_compile"])
        compiled = f"b{batch}_bf16_cl_compile"
        figures[f"b{batch}_compile_s"] = warmup_s[compiled] - statistics.median(walls[
            "bf16_cl_compile"])
    settings = {"arch": scale.arch, "batches": list(scale.train_batches),
                "steps_per_epoch": scale.train_steps, "rounds": scale.train_rounds,
                "variants": {v: {"precision": p, "channels_last": c, "compile": k}
                             for v, (p, c, k) in VARIANTS.items()},
                "compile_backend": scale.compile_backend, "compile_dynamic": False,
                "penalty": penalty_text(),
                "warmup_epoch_s": warmup_s,
                "epoch_s": {name: [w for w, _ in t] for name, t in times.items()},
                **tf32_flags(torch)}
    return {"settings": settings, "figures": figures,
            "definition": "fp32: float32 tensors, convolutions in TF32 where settings.tf32_cudnn "
                          "lets cuDNN (as a trial with precision fp32); "
                          "images_per_s: images of one epoch of hgsearch.train.train (DeviceData "
                          "augmentation, the trial's default HGSR penalty) / its median wall "
                          "seconds over the rounds, variants interleaved ABBA after a warm-up "
                          "epoch each; speedups: paired ratios of epoch seconds (fp32 / bf16_cl, "
                          "bf16_cl / bf16_cl_compile); compile_s: the compiled variant's warm-up "
                          "epoch less its median epoch (cold cache where TORCHINDUCTOR_CACHE_DIR "
                          "is a fresh folder)"}


def tf32_flags(torch: Any) -> dict[str, Any]:
    """torch's TF32 switches as they stand (PyTorch defaults: cuDNN on, matmul off)."""
    return {"tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}


def bench_data_share(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """The hot suite's data benchmark (DeviceData batch vs a plain SGD step, and a DataLoader
    beside it) at every training batch size, with the trial's runtime (bf16 + channels_last on
    CUDA)."""
    from hgsearch.bench.data import bench_data

    figures: dict[str, float] = {}
    settings: dict[str, Any] = {"arch": scale.arch, "batches": list(scale.train_batches),
                                "batches_per_round": scale.data_batches,
                                "rounds": scale.data_rounds,
                                "precision": str(runtime.autocast_dtype or "float32").removeprefix(
                                    "torch."),
                                "channels_last": runtime.channels_last}
    for batch in scale.train_batches:
        sizes = replace(FULL, arch=scale.arch, batch=batch, data_batches=scale.data_batches,
                        rounds=scale.data_rounds)
        r = bench_data(sizes, runtime)
        for key in ("data_share_of_step", "loader_share_of_step", "device_batch_s",
                    "loader_batch_s", "step_s"):
            figures[f"b{batch}_{key}"] = r["figures"][key]
        settings["loader"] = r["settings"]["loader"]
    return {"settings": settings, "figures": figures,
            "definition": "data_share_of_step: seconds per augmented, normalized batch from "
                          "DeviceData.train_batches / seconds of one SGD step on such a batch "
                          "(hgsearch bench's data benchmark); loader_share_of_step: the same for "
                          "a torchvision Dataset + DataLoader (num_workers=0)"}
