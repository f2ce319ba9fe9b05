"""The lines a sweep prints at its end: counts by status (stopped ones said apart), the
baseline, the Pareto front."""

from __future__ import annotations

from typing import Any

from hgsearch.analysis.front import format_table, front_table, pareto_front
from hgsearch.errors import UserError
from hgsearch.results import baseline_mask
from hgsearch.search.progress import _fmt
from hgsearch.search.space import Space


def summary(rows: Any, sp: Space, *, name: str, complete: bool) -> list[str]:
    """End-of-sweep lines: counts by status, the baseline, the Pareto front as a table."""
    counts = rows["status"].value_counts().to_dict() if len(rows) else {}
    lines = [f"sweep {name}: {len(rows)} rows (" + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items())) + ")"]
    if counts.get("stopped"):
        lines.append(f"{counts['stopped']} stopped early (a hopeless dense phase): told to Optuna "
                     "as PRUNED, never counted as completed nor put on the front")
    if not complete:
        lines.append(f"not finished: continue with `hgsearch sweep --name {name} --resume`")
    is_base = baseline_mask(rows)
    searched = rows[~is_base]
    if is_base.any():
        base = rows[is_base].iloc[0]
        lines.append("baseline: " + ", ".join(f"{m} {_fmt(base.get(m))}" for m in sp.metrics)
                     + f" ({base['status']})")
    try:
        front = pareto_front(searched, list(sp.objectives))
    except UserError as err:
        return [*lines, f"no Pareto front yet: {err}"]
    table = format_table(front_table(front, list(sp.objectives), keys=[p.key for p in sp.params]))
    lines.append(f"Pareto front ({len(front)} of {front.attrs['usable']} usable trials; "
                 "MACs count one multiply-accumulate as one):")
    lines.extend(table.to_string(index=False).splitlines())
    return lines
