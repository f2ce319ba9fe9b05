"""Confirmation seeds: the selected trial, its baseline and its controls re-run with K more seeds.

One seed decides nothing: a network's accuracy moves by several test images from seed to seed,
so the winner of a front is optimistic by construction. ``hgsearch select RESULTS --confirm K``
re-runs, with ``seed + k`` for k = 1..K, the selected trial's keys, its sweep's baseline's (when
the sweep has one) and each of its controls' (``controls.py``, when they ran): K x (1 + baseline
+ controls) trials, each as long as its original. Early stopping is off in them (the baseline's
run of another seed is no reference). Each is one ordinary trial of its own row, ``trial_id``
``<original>-seed<k>``, with ``confirm_of`` and ``confirm_seed`` (k), never on the front and
never selected (``results.confirm_mask``). A row is written once: a second ``--confirm K`` runs
only the seeds that have none. ``analysis.confirm`` reads them as paired differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hgsearch.errors import UserError
from hgsearch.search.records import ENDED, lock, read_row
from hgsearch.search.tasks import Log, TaskRun, run_tasks, trial_keys

_NOT_COPIED = ("trial_id", "out_dir")


def confirm_id(trial_id: str, k: int) -> str:
    return f"{trial_id}-seed{k}"


def check_count(count: Any) -> int:
    """``--confirm K``: an integer >= 1, else a one-line UserError."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"--confirm {count}: expected an integer >= 1 (seeds to add to each "
                        "trial compared)")
    return count


def confirm_keys(row: dict[str, Any], k: int, *, folder: Path) -> dict[str, Any]:
    """The trial keys of the original trial ``row`` (its row) with ``seed + k``."""
    keys = trial_keys(row, leave_out=_NOT_COPIED)
    keys.update(seed=int(keys.get("seed", 0)) + k, early_stop=False,
                trial_id=confirm_id(str(row["trial_id"]), k), out_dir=str(folder))
    return keys


def missing(rows: Any, trial_ids: list[str], count: int, *,
            folder: Path) -> list[tuple[dict, dict]]:
    """(keys, extra columns) of every seed k = 1..count of ``trial_ids`` without an ended row."""
    by_id = {str(r["trial_id"]): r for r in rows.to_dict("records")}
    wanted = []
    for trial_id in trial_ids:
        for k in range(1, count + 1):
            if (read_row(folder, confirm_id(trial_id, k)) or {}).get("status") in ENDED:
                continue      # written once: asking again runs only the missing seeds
            wanted.append((confirm_keys(by_id[trial_id], k, folder=folder),
                           {"confirm_of": trial_id, "confirm_seed": k}))
    return wanted


def run_confirmation(results: str | Path, row: Any, count: int, *, num_cpus: int | None = None,
                     runner: str = "hgsearch.trial:run_trial", log: Log = print) -> list[str]:
    """Run the missing confirmation seeds 1..``count`` of the selected trial ``row`` (a row of
    RESULTS), its baseline and its controls on a local Ray of ``num_cpus`` (default: every
    core), with the sweep's resources and ``max_concurrent``; the ids run."""
    from hgsearch.analysis.confirm import others_of
    from hgsearch.results import load_results
    from hgsearch.search.cluster import check_resources, ray_session
    from hgsearch.search.console import make_board
    from hgsearch.search.records import read_sweep_json
    from hgsearch.search.space_file import parse_space

    check_count(count)
    folder = Path(results).resolve()
    if not (folder / "sweep.json").is_file():
        raise UserError(f"--confirm: no {folder / 'sweep.json'}; confirmation seeds re-run a "
                        "sweep's trials with its resources (a folder of `hgsearch sweep`)")
    recorded = read_sweep_json(folder, folder.name)
    sp = parse_space(recorded["space"], source=str(folder / "sweep.json"))
    held = lock(folder)      # no sweep, nor another --confirm, writes rows meanwhile
    try:
        rows = load_results(folder)
        ids = [str(row["trial_id"])] + [other for _, other in others_of(rows, row)]
        wanted = missing(rows, ids, count, folder=folder)
        if not wanted:
            return []
        log(f"confirm: {len(wanted)} trial(s) of seeds 1..{count} of " + ", ".join(ids)
            + f", {sp.max_concurrent} at a time")
        with ray_session(None, num_cpus=num_cpus) as started:
            check_resources(sp.cpu, sp.gpu, local=started, log=log)
            run = TaskRun(sweep=str(recorded.get("name") or folder.name), folder=str(folder),
                          runner=runner, gpu=sp.gpu, threads=max(1, int(sp.cpu)))
            return run_tasks(wanted, run=run, cpu=sp.cpu, max_concurrent=sp.max_concurrent,
                             what="confirmation", log=log, board=make_board(folder, log=log))
    finally:
        held.close()
