"""Where lam starts to zero filters: ``reg_solver=proximal`` trained over a grid of lam.

For each family, ``lam_scale`` and lam of the grid, a dense network is trained exactly as a
trial's dense phase trains it (``trial.hgsr_hooks``, ``train.sgd_settings``, ``train.train``)
and the share of its prunable filters that are exactly zero (``metrics.zero_filter_fraction``)
is recorded, with its final training accuracy (a lam that zeroes filters by wrecking the
network shows there). The table in docs/guides/solvers.md came from this module::

    python -m hgsearch.bench.lam_reach --arch resnet20 --out lam_reach.json

The families are the flat (``reg_levels=1``, ``mix=1``) group terms with input groups, and l1.
Synthetic data by default: where lam starts to act depends on the data, the epochs and the
network, so this gives the decade to search, not a figure to quote for CIFAR.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

FAMILIES = ("l1", "group_lasso", "exclusive", "group_l12")
# Four decades each; under lam_scale=init lam is a share of the initial penalty (config: <= 10).
LAMS = {"none": (1e-4, 1e-3, 1e-2, 1e-1), "init": (1e-2, 1e-1, 1.0, 10.0)}
ONSET_SHARE = 0.1     # "starts to zero filters": a tenth of them exactly zero


def zero_share(*, arch: str, reg: str, lam: float, lam_scale: str, epochs: int,
               train_size: int, batch_size: int, seed: int = 0,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one dense network with the proximal solver; its share of exactly zero filters."""
    import torch

    from hgsearch.data import DeviceData, load_dataset
    from hgsearch.hgsr_hooks import hgsr_hooks
    from hgsearch.metrics import zero_filter_fraction
    from hgsearch.models import build_model
    from hgsearch.runtime import resolve_runtime
    from hgsearch.train import sgd_settings, train

    cfg = _config(arch, reg, lam=lam, lam_scale=lam_scale, epochs=epochs,
                  train_size=train_size, batch_size=batch_size, seed=seed, extra=extra)
    data = load_dataset(cfg)
    runtime = resolve_runtime("cpu")
    torch.manual_seed(cfg.seed)
    model = runtime.prepare(build_model(cfg.arch, data.num_classes))
    at_init = initial_penalty(cfg, model)
    penalty, prox = hgsr_hooks(cfg, model)
    split = DeviceData(data.train_x, data.train_y, mean=data.mean, std=data.std,
                       device=runtime.device)
    t0 = time.perf_counter()
    curve = train(model, split, settings=sgd_settings(cfg, cfg.epochs, cfg.lr, dense=True),
                  runtime=runtime, generator=torch.Generator().manual_seed(cfg.seed),
                  penalty=penalty, after_step=prox, log=None)
    return {"arch": arch, "reg": reg, "lam_scale": lam_scale, "lam": lam,
            "initial_penalty": at_init, "zero_filter_fraction": zero_filter_fraction(model),
            "train_acc": curve[-1]["train_acc"], "seconds": time.perf_counter() - t0}


def _config(arch: str, reg: str, *, lam: float = 1.0, lam_scale: str = "none",
            epochs: int = 1, train_size: int = 1000, batch_size: int = 32, seed: int = 0,
            extra: dict[str, Any] | None = None) -> Any:
    from hgsearch.config import make_config

    return make_config({"dataset": "synthetic", "synthetic_train_size": train_size,
                        "arch": arch, "reg": reg, "reg_levels": 1, "mix": 1.0,
                        "reg_grouping": "input", "reg_solver": "proximal", "lam": lam,
                        "lam_scale": lam_scale, "epochs": epochs, "batch_size": batch_size,
                        "seed": seed, "device": "cpu", **(extra or {})})


def initial_penalty(cfg: Any, model: Any) -> float:
    """The family's penalty of ``model`` at lam 1: what lam_scale=init divides lam by."""
    import torch

    from hgsearch.regularizers import Regularizer

    with torch.no_grad():
        return float(Regularizer(model, reg=cfg.reg, levels=cfg.reg_levels, outer=cfg.reg_outer,
                                 grouping=cfg.reg_grouping, lam=1.0, mix=cfg.mix).penalty(model))


def initial_penalties(arch: str, families: Sequence[str], seed: int = 0,
                      num_classes: int = 10) -> dict[str, float]:
    """Each family's initial penalty of ``arch`` as ``zero_share`` builds it (no training)."""
    import torch

    from hgsearch.models import build_model

    out = {}
    for reg in families:
        cfg = _config(arch, reg, seed=seed)
        torch.manual_seed(cfg.seed)
        out[reg] = initial_penalty(cfg, build_model(cfg.arch, num_classes))
    return out


def sweep(*, arch: str, families: Sequence[str], scales: Sequence[str], epochs: int,
          train_size: int, batch_size: int, lams: Sequence[float] | None = None,
          log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """``zero_share`` over families x lam_scale x ``lams`` (default LAMS[lam_scale])."""
    rows = []
    for scale in scales:
        for reg in families:
            for lam in lams or LAMS[scale]:
                row = zero_share(arch=arch, reg=reg, lam=lam, lam_scale=scale, epochs=epochs,
                                 train_size=train_size, batch_size=batch_size)
                log(f"{arch} {reg:12s} lam_scale={scale:4s} lam={lam:g}: "
                    f"{100 * row['zero_filter_fraction']:.1f}% filters zero, train "
                    f"{100 * row['train_acc']:.1f}% ({row['seconds']:.0f} s)")
                rows.append(row)
    return rows


def first_lam(rows: Sequence[dict[str, Any]], share: float) -> dict[tuple[str, str], float | None]:
    """(reg, lam_scale) -> the smallest lam of the grid with at least ``share`` filters zero."""
    out: dict[tuple[str, str], float | None] = {}
    for r in sorted(rows, key=lambda r: r["lam"]):
        key = (r["reg"], r["lam_scale"])
        out.setdefault(key, None)
        if out[key] is None and r["zero_filter_fraction"] >= share:
            out[key] = r["lam"]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    from hgsearch.fileio import utc_now, versions, write_text_atomic

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--lam-scale", nargs="+", default=["none", "init"], choices=list(LAMS))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lams", nargs="+", type=float, help="the grid (default: LAMS per scale)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON file for the rows")
    p.add_argument("--initial-penalties", action="store_true",
                   help="print each family's penalty of the initial network (lam_scale=init "
                        "divides lam by it) and stop: no training")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.initial_penalties:
        for reg, value in initial_penalties(a.arch, a.families).items():
            print(f"{a.arch} {reg:12s} initial penalty {value:,.0f}")
        return
    if not a.out:
        p.error("--out is required (unless --initial-penalties)")
    started = utc_now("seconds")
    rows = sweep(arch=a.arch, families=a.families, scales=a.lam_scale, epochs=a.epochs,
                 train_size=a.train_size, batch_size=a.batch_size, lams=a.lams)
    onset = first_lam(rows, ONSET_SHARE)
    for (reg, scale), lam in sorted(onset.items()):
        print(f"{reg:12s} lam_scale={scale:4s}: first lam with {ONSET_SHARE:.0%} of filters "
              f"zero: {'none in the grid' if lam is None else f'{lam:g}'}")
    report = {"started_at": started, "finished_at": utc_now("seconds"), "args": vars(a),
              "versions": versions(), "rows": rows,
              "onset": [{"reg": reg, "lam_scale": scale, "share": ONSET_SHARE, "lam": lam}
                        for (reg, scale), lam in sorted(onset.items())]}
    write_text_atomic(a.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
