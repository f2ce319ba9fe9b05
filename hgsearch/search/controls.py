"""A sweep's controls: was pruning worth it, against a network of the same size from scratch?

Liu et al. (ICLR 2019, "Rethinking the Value of Network Pruning") found that many pruned networks
are matched by their architecture trained from random initialization. After the search, for the
selected trial (``of: selected``: the knee of the pruned trials' front, as ``hgsearch select
--rule knee`` chooses it) or the first ``max`` trials of that front (``of: front``), the
space's ``controls:`` entry runs:

- ``scratch``: the pruned network's widths (its ``kept_channels``) from random initialization,
  for all the epochs its trial trained (epochs, finetune_between rounds, finetune_epochs) at its
  dense recipe (Liu et al.'s Scratch-E; Scratch-B, the same compute and so more epochs for the
  smaller network, is not offered);
- ``uniform``: every inner width of the arch times one factor, found by bisection on the built
  network's parameter count, then single units moved by one channel until the count is within
  ``TOLERANCE`` of the pruned network's; trained the same way.

No regularizer, no pruning, no fine-tuning: each is one ordinary trial (``widths``) whose row
carries ``control`` and ``control_of``, never on the front and never selected
(``results.control_mask``). A row is written once; a resumed sweep runs only the controls that
have none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgsearch.errors import UserError
from hgsearch.search.console import Board
from hgsearch.search.records import ENDED, read_row
from hgsearch.search.tasks import Log, TaskRun, run_tasks, trial_keys
from hgsearch.widths import scaled_widths, widths_text

KINDS = ("scratch", "uniform")
OF = ("selected", "front")
TOLERANCE = 0.01        # a uniform control's parameter count within 1% of the pruned network's
# What makes a control from its pruned trial's keys: no regularizer, no pruning, no fine-tuning,
# no early stop (there is no reference to stop against), random initialization.
CONTROL_VALUES = {"reg": "none", "lam": 0.0, "prune_ratio": 0.0, "finetune_epochs": 0,
                  "early_stop": False, "init_weights": "", "skip_training": False}
_NOT_COPIED = ("trial_id", "out_dir", "widths", "width_scale")


@dataclass(frozen=True)
class ControlSpec:
    """The space's ``controls:`` entry."""

    kinds: tuple[str, ...] = KINDS
    of: str = "selected"
    max: int = 1           # of: front: the first max trials of the front get controls


def parse_controls(raw: Any, bad: Callable[[str, str], None]) -> ControlSpec | None:
    """``controls:`` of a space file: absent/false: none; true: both kinds for the selection;
    a mapping ``{kinds: [scratch, uniform], of: selected | front, max: N}``."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return ControlSpec()
    if not isinstance(raw, Mapping):
        bad("controls", f"{raw!r}: expected true, false or {{kinds: [scratch, uniform], "
            "of: selected | front, max: N}")
        return None
    for key in raw:
        if key not in ("kinds", "of", "max"):
            bad(f"controls.{key}", "unknown; allowed: kinds, of, max")
    kinds = raw.get("kinds", list(KINDS))
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        bad("controls.kinds", f"{kinds!r}: expected a list of {', '.join(KINDS)}")
        kinds = list(KINDS)
    of = raw.get("of", "selected")
    if of not in OF:
        bad("controls.of", f"{of!r}: allowed values are {', '.join(OF)}")
    top = raw.get("max", 1)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        bad("controls.max", f"{top!r}: expected an integer >= 1 (trials of the front)")
        top = 1
    return ControlSpec(tuple(dict.fromkeys(kinds)), str(of), top)


def control_id(trial_id: str, kind: str) -> str:
    return f"{trial_id}-{kind}"


def targets(rows: Any, spec: ControlSpec, objectives: list[tuple[str, str]]) -> Any:
    """The pruned trials that get controls: the knee of the front, or its first ``max``."""
    import pandas as pd

    from hgsearch.analysis.front import pareto_front
    from hgsearch.analysis.select_trial import select_trial
    from hgsearch.results import baseline_mask

    pruned = rows[rows["kept_channels"].notna() & rows["widths_dense"].notna()]
    smaller = [list(k) != list(w) for k, w in zip(pruned["kept_channels"], pruned["widths_dense"])]
    pruned = pruned.loc[pd.Series(smaller, index=pruned.index, dtype=bool)]
    if pruned.empty:
        return pruned
    try:
        if spec.of == "selected":
            chosen = select_trial(pruned, rule="knee", objectives=objectives).trial_id
            return pruned[pruned["trial_id"].astype(str).eq(chosen)]
        front = pareto_front(pruned, objectives)
    except UserError:        # no usable pruned trial: nothing to control
        return pruned.iloc[:0]
    return front[~baseline_mask(front)].head(spec.max)


def uniform_widths(arch: str, num_classes: int, target_params: int, *,
                   tolerance: float = TOLERANCE) -> tuple[list[int], float]:
    """Widths of ``arch`` with one scale factor (bisection on the built network's parameter
    count), then units moved by one channel, last first, while that brings the count closer to
    ``target_params`` and it is not yet within ``tolerance``; (widths, factor)."""
    import torch

    from hgsearch.metrics import count_params
    from hgsearch.models import build_model, default_widths

    full = default_widths(arch)

    def params(widths: list[int]) -> int:
        with torch.device("meta"):     # shapes only: no memory, no initialization cost
            return count_params(build_model(arch, num_classes, widths))

    lo, hi = 0.0, 1.0
    for _ in range(40):                # the largest factor whose network is not larger
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params(scaled_widths(full, mid)) <= target_params else (lo, mid)
    widths = min((scaled_widths(full, lo), scaled_widths(full, hi)),
                 key=lambda w: abs(params(w) - target_params))
    gap = abs(params(widths) - target_params)
    while gap > tolerance * target_params:
        moves = [widths[:i] + [widths[i] + d] + widths[i + 1:]
                 for i in reversed(range(len(widths))) for d in (-1, 1) if widths[i] + d >= 1]
        best = min(moves, key=lambda w: abs(params(w) - target_params))
        if abs(params(best) - target_params) >= gap:
            break
        widths, gap = best, abs(params(best) - target_params)
    return widths, lo


def control_keys(target: Mapping[str, Any], kind: str, *, folder: Path,
                 log: Log) -> dict[str, Any]:
    """The trial keys of ``kind``'s control of the pruned trial ``target`` (its row)."""
    keys = trial_keys(target, leave_out=_NOT_COPIED)
    keys.update(CONTROL_VALUES)
    # Scratch-E: as many epochs as the pruned trial trained, dense, between the pruning rounds
    # and fine-tuning together.
    between = int(target.get("finetune_between") or 0) * (int(target.get("prune_steps") or 1) - 1)
    keys["epochs"] = int(target["epochs"]) + between + int(target.get("finetune_epochs") or 0)
    keys.update(trial_id=control_id(str(target["trial_id"]), kind), out_dir=str(folder))
    if kind == "scratch":
        keys["widths"] = widths_text(target["kept_channels"])
    else:
        widths, factor = uniform_widths(str(target["arch"]), int(target["num_classes"]),
                                        int(target["params_final"]))
        keys["widths"] = widths_text(widths)
        log(f"control {keys['trial_id']}: every width of {target['arch']} x {factor:.4f}, "
            f"rounded (single units moved by one channel where needed to meet "
            f"{int(target['params_final']):,} parameters within {TOLERANCE:.0%}): "
            f"{keys['widths']}")
    return keys


def run_controls(spec: ControlSpec | None, *, rows: Any, objectives: list[tuple[str, str]],
                 run: TaskRun, cpu: float, max_concurrent: int, log: Log,
                 board: Board | None = None) -> list[str]:
    """Run every control of ``spec`` that has no ended row yet, ``max_concurrent`` at a time
    as Ray tasks with a trial's resources (``tasks.run_tasks``, progress on ``board``); the
    ids run."""
    if spec is None:
        return []
    folder = Path(run.folder)
    wanted = []
    for _, target in targets(rows, spec, objectives).iterrows():
        for kind in spec.kinds:
            trial_id = control_id(str(target["trial_id"]), kind)
            if (read_row(folder, trial_id) or {}).get("status") in ENDED:
                continue      # written once: a resumed sweep does not run it again
            wanted.append((control_keys(target.to_dict(), kind, folder=folder, log=log),
                           {"control": kind, "control_of": str(target["trial_id"])}))
    if not wanted:
        return []
    log(f"controls: {len(wanted)} trial(s) from scratch ("
        + ", ".join(k["trial_id"] for k, _ in wanted) + ")")
    return run_tasks(wanted, run=run, cpu=cpu, max_concurrent=max_concurrent, what="control",
                     log=log, board=board)
