"""Prune ladders: one trained network evaluated at every value of one prune-stage key.

A space may give one key of the prune or finetune groups (keys that leave the dense training
as it is) a ladder, ``prune_ratio: {ladder: [0.3, 0.5, 0.7]}``. Optuna samples it as a
categorical over the values, like any key. After each freshly sampled trial N (a parent), the
ladder's other values become N's siblings: ordinary trials with N's params and that value, each
its own Tune trial, Optuna trial and row, which reuse N's dense network from the store.

The siblings still to ask are kept in the study's user attrs, ``ladder_pending:N`` = [values]
(a study's attrs stay writable whatever N's state), so a killed driver loses none. One is
released with ``study.enqueue_trial`` (user attrs ``ladder_parent``, ``ladder_value``) and an
ordinary ask, which pops it; then its value leaves the list. A value that already has a trial
(a driver killed between those steps) is pending no more: nothing is asked twice. A parent
stopped early (told PRUNED) loses its pending siblings: the trials go to new networks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hgsearch import config
from hgsearch.search.space import LADDER_GROUPS, Param, key_problem

if TYPE_CHECKING:   # Optuna is imported where a study runs: `hgsearch validate` never loads it
    import optuna

PENDING = "ladder_pending:"          # study user attr prefix; + the parent's number
PARENT, VALUE = "ladder_parent", "ladder_value"     # a sibling's user attrs


def parse_ladder(key: str, raw: Any, when: tuple,
                 bad: Callable[[str], None]) -> Param | None:
    """The ``{ladder: [...]}`` entry of ``search.<key>``; each problem goes to ``bad``."""
    meta = config.FIELDS[key].metadata
    if meta["group"] not in LADDER_GROUPS or meta.get("dense", False):
        bad(f"a ladder needs a key of the {' or '.join(LADDER_GROUPS)} group, which leaves the "
            f"dense training as it is; {key} is in group {meta['group'] or 'none'}")
        return None
    if not isinstance(raw, list) or len(raw) < 2:
        bad("ladder expects a list of at least 2 values, e.g. {ladder: [0.3, 0.5, 0.7]}")
        return None
    values = []
    for value in raw:
        problem = key_problem(key, value)
        if problem:
            bad(f"ladder {problem}")
            return None
        values.append(config.coerce(key, value))
    if len(set(values)) != len(values):
        bad("ladder lists a value twice")
        return None
    return Param(key, "ladder", choices=tuple(values), when=when)


def ladder_notes(params: Sequence[Param], num_samples: int, share_dense: bool) -> list[str]:
    """Advice on a ladder that is no error."""
    ladder = next((p for p in params if p.kind == "ladder"), None)
    if ladder is None:
        return []
    size, notes = len(ladder.choices), []
    if not share_dense:
        notes.append(f"share_dense is false: each value of the {ladder.key} ladder trains "
                     "its own dense network")
    if num_samples % size:
        notes.append(f"num_samples={num_samples} is not a multiple of the {size} values of "
                     f"the {ladder.key} ladder: the last ladder is cut short")
    return notes


# --------------------------------------------------------------------------- bookkeeping

def recorded(study: optuna.Study) -> dict[int, list]:
    """The study's pending lists as written, by parent number."""
    return {int(k[len(PENDING):]): list(v) for k, v in study.user_attrs.items()
            if k.startswith(PENDING)}


def pending(study: optuna.Study) -> dict[int, list]:
    """Siblings still to ask, by parent (ascending): recorded values without a trial yet."""
    asked = {(t.user_attrs[PARENT], t.user_attrs.get(VALUE))
             for t in study.get_trials(deepcopy=False) if PARENT in t.user_attrs}
    return {n: [v for v in values if (n, v) not in asked]
            for n, values in sorted(recorded(study).items())}


def pending_count(study: optuna.Study) -> int:
    return sum(len(values) for values in pending(study).values())


def tidy(study: optuna.Study) -> None:
    """Rewrite each pending list without the values that have a trial (on start and resume)."""
    written = recorded(study)
    for number, values in pending(study).items():
        if values != written[number]:
            study.set_user_attr(f"{PENDING}{number}", values)


def is_sibling(trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> bool:
    return PARENT in trial.user_attrs


def has_record(study: optuna.Study, number: int) -> bool:
    return f"{PENDING}{number}" in study.user_attrs


def record(study: optuna.Study, parent: optuna.trial.Trial, ladder: Param,
           budget: int) -> list:
    """Record the siblings of ``parent``: the ladder's other values, at most ``budget``.

    A parent without the key (inapplicable there) has none; the list is written even empty,
    so that an adopted parent is not given siblings twice.
    """
    values = []
    if ladder.key in parent.params:
        own = parent.params[ladder.key]
        values = [v for v in ladder.choices if v != own][:max(0, budget)]
    study.set_user_attr(f"{PENDING}{parent.number}", values)
    return values


def drop_ended(study: optuna.Study, dense_ended: Callable[[int], bool]) -> list[int]:
    """Ask no more siblings of a parent whose dense phase was stopped early (told PRUNED) or
    that ``dense_ended`` says ended there (its row: stopped before Tune has told it, or
    diverged in training): they would share its network and end at once, spending trials on
    nothing; the budget goes to new networks instead. Returns the parents emptied."""
    from optuna.trial import TrialState

    stopped = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))}
    dropped = [n for n, values in pending(study).items()
               if values and (n in stopped or dense_ended(n))]
    for number in dropped:
        study.set_user_attr(f"{PENDING}{number}", [])
    return dropped


def next_release(study: optuna.Study, released: Callable[[int], bool]) -> tuple[int, Any] | None:
    """(parent, value) of the first pending sibling whose parent ``released`` allows, or None."""
    for number, values in pending(study).items():
        if values and released(number):
            return number, values[0]
    return None


def enqueue(study: optuna.Study, number: int, value: Any, *, key: str) -> None:
    """Queue parent ``number``'s sibling at ``value``: the next ask pops it (Optuna's queue)."""
    parent = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    study.enqueue_trial({**parent.params, key: value}, user_attrs={PARENT: number, VALUE: value})


def asked(study: optuna.Study, number: int, value: Any) -> None:
    """The sibling at ``value`` has its trial: it leaves parent ``number``'s pending list."""
    values = recorded(study).get(number, [])
    study.set_user_attr(f"{PENDING}{number}", [v for v in values if v != value])
