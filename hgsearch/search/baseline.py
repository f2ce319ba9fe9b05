"""The baseline trial of a sweep (docs/method.md part 4): the same network and training budget
without regularization or pruning, run once beside the searched trials and never told to
Optuna, so that every searched trial can be read against it.

With ``init_weights`` the baseline is the network the user brought, evaluated as it is (no
training, pruning or fine-tuning: ``PRETRAINED_VALUES``); docs/guides/own-network.md says why
no trained reference is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hgsearch import config
from hgsearch.search.space import SET_BY_SWEEP, Param, key_problem

# The baseline is the early-stopping reference (hgsearch/early_stop.py): it is never stopped.
BASELINE_VALUES = {"reg": "none", "lam": 0.0, "prune_ratio": 0.0, "early_stop": False}
# Keys of these groups are inert in the baseline, so a search over them needs no baseline value.
BASELINE_INERT_GROUPS = ("hgsr", "prune", "stop")
BASELINE_ID = "baseline"
# On top of BASELINE_VALUES when the sweep starts from init_weights: the given network as it is.
PRETRAINED_VALUES = {"skip_training": True, "finetune_epochs": 0}
# ... and then no key of these groups acts in the baseline either.
PRETRAINED_INERT_GROUPS = ("train", "finetune")


def parse_baseline(raw: Any, fixed: Mapping[str, Any], params: Sequence[Param],
                   bad: Callable[[str, str], None]) -> dict | None:
    """The baseline's trial keys besides ``fixed``, None for none; each problem goes to ``bad``.

    ``raw`` is the file's ``baseline:`` entry: true, false, or a mapping of the baseline's own
    values for searched keys that are not inert there.
    """
    if raw is False or raw is None:
        return None
    overrides = {} if raw is True else raw
    if not isinstance(overrides, Mapping):
        bad("baseline", "expected true, false or a mapping of trial keys for it")
        return None
    pretrained = bool(fixed.get("init_weights"))
    changes = {**BASELINE_VALUES, **(PRETRAINED_VALUES if pretrained else {})}
    inert_groups = BASELINE_INERT_GROUPS + (PRETRAINED_INERT_GROUPS if pretrained else ())
    for key, value in overrides.items():
        problem = key_problem(key, value)
        if problem or key in SET_BY_SWEEP or key in changes:
            bad(f"baseline.{key}", problem or "is set by the sweep for the baseline")
        else:
            changes[key] = config.coerce(key, value)
    for p in params:
        inert = config.FIELDS[p.key].metadata["group"] in inert_groups
        if not inert and p.key not in fixed and p.key not in overrides \
                and p.key not in BASELINE_VALUES:
            bad("baseline", f"{p.key} is searched; give the baseline's value "
                f"(baseline: {{{p.key}: ...}}) so that it trains on the same budget")
    known = config.problems_of(dict(fixed))     # reported under fixed
    for problem in config.problems_of({**fixed, **changes}):
        if problem not in known:
            bad("baseline", problem)
    return changes


def early_stop_default(fixed: Mapping[str, Any], params: Sequence[Param],
                       baseline: Mapping[str, Any] | None) -> dict:
    """``{"early_stop": True}`` for the searched trials of a sweep with a baseline (their
    reference curve), unless the file fixes or searches early_stop; else ``{}``. A pretrained
    baseline (init_weights) trains nothing, so it leaves no reference curve: ``{}``."""
    if baseline is None or fixed.get("init_weights") or "early_stop" in fixed \
            or any(p.key == "early_stop" for p in params):
        return {}
    return {"early_stop": True}


def early_stop_notes(fixed: Mapping[str, Any], params: Sequence[Param], share_dense: bool,
                     baseline: Mapping[str, Any] | None) -> list[str]:
    """Advice where early stopping is on but may stop nothing: a trial's reference curve is
    its own network without the regularizer, in the dense store; the baseline trains it only
    while the keys that change the dense network, the regularizer's aside, equal its own."""
    if fixed.get("early_stop") is not True and not any(p.key == "early_stop" for p in params):
        return []
    if not share_dense:
        return ["early_stop: share_dense is false, so no dense store holds a reference curve: "
                "no trial will be stopped"]
    dense = [k for k in config.dense_keys() if config.FIELDS[k].metadata["group"] != "hgsr"]
    differ = list(dict.fromkeys([p.key for p in params if p.key in dense] + [
        k for k, v in (baseline or {}).items()
        if k in dense and v != fixed.get(k, config.FIELDS[k].default)]))
    if baseline is not None and not differ:
        return []
    head = "early_stop: a trial's reference is its network without the regularizer"
    tail = "only an unregularized trial with the same keys trains it; without one the trial is " \
        "not stopped"
    if baseline is None:
        return [f"{head}, and with no baseline {tail}"]
    keys = ", ".join(differ)
    return [f"{head}; {keys} {'differs' if len(differ) == 1 else 'differ'} between trials and "
            f"the baseline (searched or set for it), so it is the baseline's network only in "
            f"trials with the baseline's {keys}; in others {tail}"]
