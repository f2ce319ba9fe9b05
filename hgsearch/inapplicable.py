"""Which trial keys have no effect on a trial, given its other keys: the one place that rule
lives. A row holds null for them (``results.write_row``), the dense store leaves them out of a
network's address, and a search does not propose them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hgsearch.config import FIELDS, TrialConfig

# Keys a trial's other keys switch off (docs/method.md parts 1-3, and what phases.py, proximal.py
# and the data loaders actually read): (condition on the config, keys it makes inapplicable, why).
# The HGSR rules depend on the solver: the subgradient solver reads a key only through the
# penalty, while the proximal step (hgsearch/proximal.py) also picks its operator by reg and
# reg_levels and zeroes groups by reg_grouping. tests/test_dense_address.py trains random pairs
# of configurations to check that keys called inapplicable here leave the weights unchanged.
_HGSR_SHAPE = ("reg_levels", "reg_outer", "reg_grouping")
_NO_PENALTY = ("mix", *_HGSR_SHAPE, "reg_solver", "lam_scale")
_STOP_KEYS = ("early_stop", "early_stop_ratio", "early_stop_rungs")
_PRUNE_KEYS = ("score_samples", "prune_target", "prune_scope", "prune_steps", "min_channels",
               "round_to")


def _proximal(c: Mapping[str, Any]) -> bool:
    return c["reg_solver"] == "proximal"


INAPPLICABLE_RULES: tuple[tuple[Any, tuple[str, ...], str], ...] = (
    (lambda c: c["reg"] == "none", ("lam", *_NO_PENALTY, *_STOP_KEYS),
     "reg=none: no regularizer (and nothing to stop early)"),
    (lambda c: c["lam"] == 0, (*_NO_PENALTY, *_STOP_KEYS),
     "lam=0: the penalty is not computed (and nothing to stop early)"),
    (lambda c: not c["early_stop"], _STOP_KEYS[1:], "early_stop=false: no rungs"),
    (lambda c: c["reg"] == "l1", ("mix", "reg_levels", "reg_outer"),
     "reg=l1: ||W||_1 alone, no levels"),
    (lambda c: c["reg"] == "l1" and not _proximal(c), ("reg_grouping",),
     "reg=l1 with subgradients: no groups (the proximal step zeroes a filter's BatchNorm with "
     "it under output groups)"),
    (lambda c: c["mix"] == 0 and not _proximal(c), _HGSR_SHAPE,
     "mix=0 with subgradients: only the L1 term is left"),
    # Under the proximal step at mix=0 the slope of the thresholded families is the L1 term's,
    # whatever the level or outer; the grouping still says which groups are zeroed, and for
    # group_lasso the level picks the exact operator (1) or the thresholding (2).
    (lambda c: c["mix"] == 0 and _proximal(c) and c["reg"] != "group_lasso", ("reg_levels",),
     "mix=0 with the proximal step: one thresholding at either level"),
    (lambda c: c["mix"] == 0, ("reg_outer",), "mix=0: only the L1 term is left"),
    (lambda c: c["reg_levels"] == 1, ("reg_outer",), "reg_levels=1: flat groups, no outer"),
    (lambda c: c["momentum"] == 0, ("nesterov",), "momentum=0: no Nesterov look-ahead"),
    (lambda c: c["prune_ratio"] == 0, _PRUNE_KEYS, "prune_ratio=0: nothing is scored or pruned"),
    (lambda c: c["finetune_epochs"] == 0, ("finetune_lr",), "finetune_epochs=0: no fine-tuning"),
    (lambda c: c["dataset"] != "imagefolder", ("image_size",), "only imagefolder is resized"),
    (lambda c: c["dataset"] != "synthetic", ("synthetic_train_size", "synthetic_test_size"),
     "the data is read, not generated"),
    (lambda c: c["dataset"] == "synthetic", ("data_dir",), "synthetic data is generated"),
    (lambda c: c["dataset"] not in ("tinyimagenet", "imagefolder"), ("cache_dir",),
     "only decoded image files are cached"),
    (lambda c: c["dataset"] != "imagefolder", ("data_path", "data_memory_gb", "data_workers"),
     "only imagefolder can stream: the other datasets are held in memory"),
    (lambda c: c["data_path"] != "auto", ("data_memory_gb",),
     "the data path is chosen, not decided by the budget"),
    (lambda c: c["data_path"] == "memory", ("data_workers",), "no decoding workers in memory"),
)


def inapplicable_keys(config: TrialConfig | Mapping[str, Any]) -> set[str]:
    """Trial keys whose value has no effect on this trial, given its other keys.

    The one place this rule lives: a trial's row holds null for these keys (``results.write_row``)
    and a search should not propose them (a key in the returned set is inert for this trial).
    Works on a partial mapping too (missing keys take their defaults), so a define-by-run search
    can ask after sampling the keys the rule depends on. A key whose value is None counts as
    inapplicable already and does not switch others off.
    """
    values = config.to_dict() if isinstance(config, TrialConfig) else dict(config)
    merged = {k: f.default for k, f in FIELDS.items()}
    merged.update({k: v for k, v in values.items() if k in FIELDS and v is not None})
    out: set[str] = set()
    for applies, keys, _why in INAPPLICABLE_RULES:
        if applies(merged):
            out.update(keys)
    return out
