"""A results folder as a sweep leaves it, for the analysis, export, report and predict tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from hgsearch.config import TrialConfig
from hgsearch.models import build_model, default_widths, save_model

DENSE = default_widths("resnet20")
# What phases.py stores beside the weights: how the network was fed (synthetic data's classes)
FEED = {"dataset": "synthetic", "image_size": 32, "mean": [0.45, 0.5, 0.55],
        "std": [0.2, 0.25, 0.3], "classes": ["disk", "ring", "square", "triangle", "plus",
                                               "hstripes", "vstripes", "dstripes", "checks",
                                               "dots"]}


def trial_row(i: int, *, acc: float | None, ratio: float, status: str = "ok",
              baseline: bool = False) -> dict:
    kept = DENSE if baseline else [max(1, round(w * ratio)) for w in DENSE]
    return {**TrialConfig().to_dict(), "trial_id": f"t{i:02d}", "lam": 10.0 ** -(i % 5 + 3),
            "prune_ratio": 0.0 if baseline else 1 - ratio, "status": status, "error": "",
            "acc_final": acc, "test_acc_final": None if acc is None else acc - 0.005,
            "params_ratio": ratio, "macs_ratio": min(1.0, ratio * 1.1),
            "kept_channels": kept, "widths_dense": DENSE, "is_baseline": baseline,
            "sweep": "demo", "started_at": f"2026-01-01T00:{i:02d}:00+00:00",
            "finished_at": f"2026-01-01T00:{i:02d}:30+00:00"}


ROWS = [  # (acc_final, params_ratio, status, is_baseline)
    (0.93, 1.0, "ok", True), (0.929, 0.8, "ok", False), (0.925, 0.45, "ok", False),
    (0.85, 0.3, "ok", False), (0.70, 0.15, "ok", False), (0.80, 0.7, "ok", False),
    (None, 0.5, "failed", False), (0.10, 0.4, "diverged", False),
]


def write_results(folder: Path, rows=ROWS, *, models: bool = True) -> pd.DataFrame:
    """A results folder as trials write it: one Parquet row per trial plus its compact model."""
    frame = []
    for i, (acc, ratio, status, baseline) in enumerate(rows):
        row = trial_row(i, acc=acc, ratio=ratio, status=status, baseline=baseline)
        (folder / "trials").mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row]).to_parquet(folder / "trials" / f"{row['trial_id']}.parquet")
        if models and status == "ok":
            torch.manual_seed(i)
            model = build_model("resnet20", 10, row["kept_channels"])
            for m in model.modules():  # non-trivial BatchNorm statistics, so eval mode matters
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
            save_model(model, folder / "models" / f"{row['trial_id']}.pt", extra=FEED)
        frame.append(row)
    return pd.DataFrame(frame)
