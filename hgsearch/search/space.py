"""A validated search space: its searched keys, objectives and sweep settings.

``Space.suggest`` is the define-by-run function Optuna runs for every trial. The file format
is parsed in ``hgsearch.search.space_file``; samplers come from ``samplers``, the baseline's
keys from ``baseline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hgsearch import config
from hgsearch.errors import UserError
from hgsearch.search.controls import ControlSpec
from hgsearch.search.samplers import SamplerSpec, make_sampler

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice", "ladder")
MODIFIERS = ("when", "log", "step")
SECTIONS = ("fixed", "search", "objectives", "sampler", "num_samples", "max_concurrent",
            "resources", "retries", "baseline", "keep_checkpoints", "share_dense", "controls")
# Groups whose keys act after the dense training: one of them may be a ladder (ladder.py).
LADDER_GROUPS = ("prune", "finetune")

# The sweep sets these per trial; a space may not.
SET_BY_SWEEP = ("trial_id", "out_dir")


@dataclass(frozen=True)
class Param:
    """One searched trial key: its distribution and the condition under which it is searched."""

    key: str
    kind: str                       # one of DISTRIBUTIONS
    # choice and ladder: the values (a ladder's in file order: its siblings' order)
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    log: bool = False
    step: float | int | None = None
    when: tuple[tuple[str, tuple], ...] = ()    # ((key, allowed values), ...)

    def describe(self) -> str:
        if self.kind in ("choice", "ladder"):
            text = f"{self.kind} " + ", ".join(str(c) for c in self.choices)
        else:
            log = " log" if self.log and self.kind == "int" else ""
            step = f" step {self.step:g}" if self.step else ""
            text = f"{self.kind} [{self.low:g}, {self.high:g}]{log}{step}"
        for key, values in self.when:
            text += f" when {key} = {' or '.join(str(v) for v in values)}"
        return text


@dataclass(frozen=True)
class Space:
    """A validated search space; ``suggest`` is the define-by-run function given to Optuna."""

    source: str
    raw: dict                                   # the file's mapping (JSON-safe), for sweep.json
    fixed: dict
    params: tuple[Param, ...]
    objectives: tuple[tuple[str, str], ...]     # ((row column, "max" | "min"), ...)
    sampler: SamplerSpec
    num_samples: int
    max_concurrent: int
    cpu: float
    gpu: float
    retries: int
    baseline: dict | None                       # the baseline's keys besides fixed; None: none
    notes: tuple[str, ...] = ()                 # advice that is no error
    keep_checkpoints: bool = False              # keep a trial's checkpoints after its row
    share_dense: bool = True                    # trials reuse equal dense networks (store)
    controls: ControlSpec | None = None         # after the search (controls.py); None: none

    @property
    def ladder(self) -> Param | None:
        """The searched key whose every value each trained network is evaluated at, if any."""
        return next((p for p in self.params if p.kind == "ladder"), None)

    @property
    def metrics(self) -> list[str]:
        return [name for name, _ in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [mode for _, mode in self.objectives]

    @property
    def directions(self) -> list[str]:
        """The objectives' directions as Optuna names them (``study.directions``)."""
        return ["maximize" if mode == "max" else "minimize" for mode in self.modes]

    def suggest(self, trial: Any) -> None:
        """Optuna define-by-run space: sample each key in file order, conditions permitting.

        A key the trial already holds (an orphan adopted on resume) keeps its stored value:
        Optuna's ``suggest_*`` returns it instead of sampling again. A key that has no effect
        given the keys sampled before it (``inapplicable.inapplicable_keys``: ``reg_outer`` on one
        level, the group keys with ``reg=l1``...) is not proposed, so the study holds only
        parameters that mattered; its row holds null for it. A ladder is a categorical over its
        values: every trial has the same distribution, and a sibling (ladder.py) is an enqueued
        trial whose value is fixed.
        """
        from hgsearch.inapplicable import inapplicable_keys

        values = dict(self.fixed)
        for p in self.params:
            if not all(_value_of(values, key) in allowed for key, allowed in p.when):
                continue    # not searched in this trial: fixed or default value applies
            if p.key in inapplicable_keys(values):
                continue    # inert in this trial: proposing it would only mislead the sampler
            if p.kind in ("choice", "ladder"):
                values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
            elif p.kind == "int":
                values[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1,
                                                   log=p.log)
            else:
                values[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step,
                                                     log=p.log)

    def make_sampler(self) -> Any:
        """A fresh Optuna sampler as the file describes it."""
        return make_sampler(self.sampler.name, seed=self.sampler.seed,
                            options=dict(self.sampler.options), fetch=self.sampler.fetch)

    def describe(self) -> list[str]:
        lines = [f"{self.source}: ok"]
        lines.append("  fixed:      " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()))
        for p in self.params:
            lines.append(f"  search:     {p.key}: {p.describe()}")
        lines.append("  objectives: " + ", ".join(f"{n} {m}" for n, m in self.objectives))
        seed = "no seed" if self.sampler.seed is None else f"seed {self.sampler.seed}"
        lines.append(f"  sampler:    {self.sampler.name} ({seed})")
        extra = " + baseline" if self.baseline is not None else ""
        lines.append(f"  trials:     {self.num_samples}{extra}, {self.max_concurrent} at a time, "
                     f"cpu {self.cpu:g} gpu {self.gpu:g} each, {self.retries} retries")
        lines.append(f"  dense:      {'shared' if self.share_dense else 'trained by each trial'}"
                     + (f"; ladder over {self.ladder.key}" if self.ladder else ""))
        if self.controls is not None:
            c = self.controls
            whom = "the selected trial" if c.of == "selected" else f"the first {c.max} of the front"
            count = len(c.kinds) * (1 if c.of == "selected" else c.max)
            lines.append(f"  controls:   {', '.join(c.kinds)} for {whom}, after the search: up "
                         f"to {count} more trial(s) from scratch, each of its trial's epochs + "
                         "finetune_epochs")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines


def _value_of(values: Mapping[str, Any], key: str) -> Any:
    return values[key] if key in values else config.FIELDS[key].default



def key_problem(key: Any, value: Any) -> str | None:
    """The problem with one trial key's raw value, or None."""
    try:
        coerced = config.coerce(str(key), value)
    except UserError as err:
        return "; ".join(err.problems)
    return config.check(str(key), coerced)
