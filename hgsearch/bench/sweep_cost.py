"""``hgsearch bench --suite sweep-cost``: what the economical sweep saves, as hypervolume
against compute (issue 11).

For each sampler seed two sweeps of the same space (by default the demo's) run one after the
other, each a real ``run_sweep`` under the report's folder; the economical one gets
``economical_trials`` (2) times the trials, as its trials are cheaper:

- ``plain-s<seed>``: every economy off: ``share_dense`` and ``early_stop`` false, and a prune
  ladder ``{ladder: [...]}`` turned into ``{choice: [...]}`` of the same values, so each value
  is an ordinary sampled trial that trains its own network;
- ``economical-s<seed>``: the space as given (shared dense training, ladder, early stopping as
  the space sets them).

Per seed the report gives both final hypervolumes against a FIXED reference point
(``REFERENCE``), and the compute (images and wall seconds, ``cost_curves``) the economical sweep
needed to first reach the plain sweep's final hypervolume, as a ratio of the plain sweep's total
(the issue's target: at most 1/3), with the dense trainings the economical sweep had finished by
then (the plain sweep's: in all), and the economical sweep's hypervolume with a third of the
plain compute as a share of the plain one's (a figure also where it never reached). The JSON
report, its Markdown table (``.txt``) and the plot (``.png``, matplotlib) are rewritten after
each sweep, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hgsearch import config
from hgsearch.bench import cost_curves
from hgsearch.config_file import read_config_file
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions

if TYPE_CHECKING:
    from hgsearch.search.space import Space

FORMAT = "hgsearch-bench-sweep-cost-v1"
# acc_final at chance for 10 classes (a collapsed trial adds nothing), params_ratio at the dense
# network's size: the same point for every sweep, so hypervolumes compare across sweeps.
REFERENCE = {"acc_final": 0.1, "params_ratio": 1.0}
VARIANTS = ("plain", "economical")
ECONOMIES = ("share_dense", "early_stop")   # the switches the plain sweep turns off
LADDER = "ladder"


@dataclass(frozen=True)
class CostScale:
    """How big each sweep is: trials (None: the space's ``num_samples``) and trial keys laid
    over the space's ``fixed`` when its data are synthetic (sizes make no sense elsewhere)."""

    num_samples: int | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    # The economical sweep's trials per plain trial. Its trials are cheaper (a ladder's siblings
    # train nothing), so at the same count it would see fewer networks: the question is the
    # compute it needs to reach the plain front, so it is given the trials to get there.
    economical_trials: float = 2.0


FULL = CostScale()
# A smoke run of the whole pipeline: 4 trials per sweep on a fifth of the demo's images.
QUICK = CostScale(num_samples=4, synthetic={"synthetic_train_size": 1000,
                                            "synthetic_test_size": 200})


# --------------------------------------------------------------------------- the two spaces

def _where(key: str) -> str:
    """Where a space file sets a switch: "fixed" for a trial key, else "section"."""
    return "fixed" if key in config.FIELDS else "section"


def plain_space(space: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a space file's mapping with every economy off, and what was changed.

    Each switch of ``ECONOMIES`` is set false where it is read (under ``fixed`` when it is a
    trial key, else as a section), searched forms of it and its own settings (``early_stop_*``,
    inapplicable once it is off) removed. Each ``{ladder: [...]}`` becomes ``{choice: [...]}``
    under ``search``, its other entries (``when``) kept.
    """
    out = copy.deepcopy(dict(space))
    fixed = dict(out.get("fixed") or {})
    search = dict(out.get("search") or {})
    changes = []
    for key in ECONOMIES:
        for section in (fixed, search):
            for k in [k for k in section if k == key or str(k).startswith(f"{key}_")]:
                del section[k]
        where = _where(key)
        (fixed if where == "fixed" else out)[key] = False
        changes.append(f"{key}: false ({where})")
    for section in (search, fixed):
        for key, spec in list(section.items()):
            if isinstance(spec, Mapping) and LADDER in spec:
                choice = {k: v for k, v in spec.items() if k != LADDER}
                search[key] = {"choice": list(spec[LADDER]), **choice}
                if section is fixed:
                    del fixed[key]
                changes.append(f"{key}: ladder {list(spec[LADDER])} -> choice")
    out["fixed"], out["search"] = fixed, search
    return out, changes


def variant_space(space: Mapping[str, Any], variant: str, seed: int,
                  scale: CostScale = FULL) -> tuple[dict[str, Any], list[str]]:
    """The space one sweep runs: ``variant``'s form, the sampler's seed, the scale's sizes."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {VARIANTS}")
    out, changes = plain_space(space) if variant == "plain" else (copy.deepcopy(dict(space)), [])
    sampler = out.get("sampler", "tpe")
    out["sampler"] = {"name": sampler, "seed": seed} if isinstance(sampler, str) else \
        {**sampler, "seed": seed}
    if scale.num_samples is not None:
        out["num_samples"] = scale.num_samples
    if variant == "economical":
        trials = int(out.get("num_samples", 8))
        out["num_samples"] = max(trials, math.ceil(trials * scale.economical_trials))
    fixed = dict(out.get("fixed") or {})
    if fixed.get("dataset", config.TrialConfig.dataset) == "synthetic":
        fixed.update(scale.synthetic)
    out["fixed"] = fixed
    return out, changes


def economies(sp: Space) -> dict[str, Any]:
    """What a parsed space turns on, as its sweep runs it: the ladder (key and values), shared
    dense training, and early stopping (its fixed value, or "searched")."""
    searched = any(p.key == "early_stop" for p in sp.params)
    early = sp.fixed.get("early_stop", config.FIELDS["early_stop"].default)
    return {"ladder": {sp.ladder.key: list(sp.ladder.choices)} if sp.ladder else None,
            "share_dense": sp.share_dense, "early_stop": "searched" if searched else early}


# --------------------------------------------------------------------------- the run

def run_sweep_cost(space: str | Path | None = None, *, seeds: Sequence[int] = (0, 1, 2),
                   out: str | Path = "results/bench", scale: CostScale = FULL,
                   reference: Mapping[str, float] = REFERENCE,
                   log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Run both sweeps per seed; return the report and the path of its JSON file."""
    import torch

    from hgsearch.bench.harness import load_average, machine_info, write_report
    from hgsearch.search.driver import run_sweep
    from hgsearch.search.space_file import find_default_space, parse_space

    path = Path(space) if space is not None else find_default_space()
    raw = read_config_file(path)
    parse_space(raw, source=str(path))      # the file as given first: its own problems, named
    spaces = {(v, s): variant_space(raw, v, s, scale) for s in seeds for v in VARIANTS}
    parsed = {key: parse_space(sp, source=f"{path} ({key[0]})") for key, (sp, _) in
              spaces.items()}                  # every problem before the first sweep starts
    objectives = list(next(iter(parsed.values())).objectives)
    missing = [n for n, _ in objectives if n not in reference]
    if missing:
        raise UserError(f"{path}: objective {missing[0]} has no fixed reference point in the "
                        f"sweep-cost benchmark (it has {', '.join(reference)})")
    ref = {n: float(reference[n]) for n, _ in objectives}
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "format": FORMAT, "started_at": utc_now("seconds"), "space": str(path),
        "economies": {v: economies(parsed[(v, seeds[0])]) for v in VARIANTS},
        "changes_plain": spaces[("plain", seeds[0])][1], "seeds": list(seeds),
        "scale": asdict(scale), "objectives": objectives, "reference": ref,
        "machine": machine_info(torch.device("cpu")), "versions": versions(),
        "definition": " ".join(DEFINITION.split()), "sweeps": {}, "per_seed": [],
        "complete": False, "notes": []}
    econ = report["economies"]["economical"]
    if not econ["ladder"] and not any(econ[k] is True or econ[k] == "searched"
                                      for k in ECONOMIES):
        report["notes"].append("the economical space turns no economy on (no ladder, "
                               + ", ".join(f"{k} {econ[k]}" for k in ECONOMIES)
                               + "): both sweeps measure the same method")
    json_path = write_report(report, out, prefix="sweep-cost-")
    folder = json_path.with_suffix("")         # the sweeps' results beside the report

    def save() -> None:
        report["seconds"] = time.perf_counter() - t0
        report["machine"]["load_average_end"] = load_average()
        write_report(report, out, prefix="sweep-cost-", table=format_sweep_cost(report))
        plot_sweep_cost(report, json_path.with_suffix(".png"))

    for seed in seeds:
        curves = {}
        for variant in VARIANTS:
            name = f"{variant}-s{seed}"
            space_file = folder / "spaces" / f"{name}.yaml"
            space_file.parent.mkdir(parents=True, exist_ok=True)
            space_file.write_text(yaml.safe_dump(spaces[(variant, seed)][0], sort_keys=False))
            log(f"[sweep-cost] {name} ...")
            entry, curves[variant] = _one_sweep(run_sweep, space_file, name, folder, objectives,
                                                ref, log)
            report["sweeps"][name] = entry
            log(f"[sweep-cost] {name}: {entry['status']} ({entry['seconds']:.0f} s)")
            save()
        if all(c is not None for c in curves.values()):
            report["per_seed"].append({"seed": seed, **cost_curves.compare(
                curves["plain"], curves["economical"])})
            report["summary"] = cost_curves.summarize(report["per_seed"])
            save()
    report["complete"] = True
    report["finished_at"] = utc_now("seconds")
    save()
    return report, json_path


def _one_sweep(run_sweep: Callable[..., Any], space_file: Path, name: str, folder: Path,
               objectives: list, ref: dict[str, float], log: Callable[[str], None],
               ) -> tuple[dict[str, Any], cost_curves.Curve | None]:
    """Run one sweep; its report entry and curve (None when it failed: the others still run)."""
    t1 = time.perf_counter()
    entry: dict[str, Any] = {"folder": str(folder / name), "status": "ok"}
    try:
        result = run_sweep(space_file, name=name, results=folder, log=log)
        curve, notes = cost_curves.cost_curve(result.rows, objectives, ref)
    except UserError:
        raise
    except Exception as err:   # one broken sweep must not lose the others
        entry.update(status=f"failed: {err.__class__.__name__}: {err}"[:500],
                     seconds=time.perf_counter() - t1)
        return entry, None
    rows = result.rows
    entry.update(seconds=time.perf_counter() - t1, complete=result.complete, notes=notes,
                 statuses={str(k): int(v) for k, v in rows["status"].value_counts().items()},
                 curve=curve.to_dict())
    if "dense_reused" in rows.columns:
        entry["dense_reused"] = int(rows["dense_reused"].eq(True).fillna(False).sum())
    return entry, curve


DEFINITION = """Per sampler seed, the plain sweep (no shared dense training, no early stopping,
ladder values sampled as a choice) and the economical one (the space as given), same space and
budget. Hypervolume of the searched trials (baseline excluded) against the fixed reference;
compute: images of training, fine-tuning and scoring (evaluation forwards not counted; each
trial's images spread evenly over its run) and wall seconds since the sweep's first trial
started. ratio_X: the economical sweep's X when it first reached the plain sweep's final
hypervolume / the plain sweep's total X (target <= 1/3). hv_share_at_third_X: the economical
sweep's hypervolume with a third of the plain sweep's total X spent / the plain sweep's final
hypervolume. Dense trainings: rows that trained a network (images_train > 0), the baseline's
included."""


# --------------------------------------------------------------------------- table and plot

def _num(value: Any, unit: str) -> str:
    """Images with a k / M / G prefix; seconds, or minutes above two."""
    if value is None:
        return "-"
    if unit != "images":
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
    for scale, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.0f}"


def format_sweep_cost(report: Mapping[str, Any]) -> list[str]:
    """The per-seed figures and their means as a Markdown table, with the reference point."""
    ref = ", ".join(f"{k} {v:g}" for k, v in report["reference"].items())
    lines = [f"Hypervolume against reference ({ref}); compute to reach the plain sweep's final "
             "hypervolume.", "",
             "| seed | plain HV | economical HV | plain images | economical images to reach | "
             "ratio images | economical HV at a third of the images, of plain's | plain wall | "
             "economical wall to reach | ratio wall | dense trainings to reach (plain's) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(value: Any, reached: Any) -> str:
        if reached is False:
            return "not reached"
        return "-" if value is None else f"{value:.2f}"

    def share(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    def trainings(s: Mapping[str, Any]) -> str:
        plain = s.get("plain_trainings")
        got = s.get("reach_trainings")
        got = "not reached" if s.get("reached") is False else "-" if got is None else str(got)
        return got if plain is None else f"{got} ({plain})"

    for s in report.get("per_seed", []):
        reached = s.get("reached")
        reach = {a: "not reached" if reached is False else _num(s[f"reach_{a}"], a)
                 for a in ("images", "wall_s")}
        lines.append(f"| {s['seed']} | {s['plain_hv']:.4f} | {s['economical_hv']:.4f} | "
                     f"{_num(s['plain_images'], 'images')} | {reach['images']} | "
                     f"{ratio(s['ratio_images'], reached)} | "
                     f"{share(s.get('hv_share_at_third_images'))} | "
                     f"{_num(s['plain_wall_s'], 'wall')}"
                     f" | {reach['wall_s']} | {ratio(s['ratio_wall_s'], reached)} | "
                     f"{trainings(s)} |")
    m = report.get("summary")
    if m:
        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        lines.append(f"| mean ({m['reached']} of {m['seeds']} reached) | "
                     f"{fmt(m['plain_hv'], '.4f')} | {fmt(m['economical_hv'], '.4f')} | | | "
                     f"{fmt(m['ratio_images'], '.2f')} | "
                     f"{fmt(m.get('hv_share_at_third_images'), '.3f')} | | | "
                     f"{fmt(m['ratio_wall_s'], '.2f')} | |")
    return lines


def plot_sweep_cost(report: Mapping[str, Any], path: str | Path) -> Path | None:
    """Hypervolume against images (and wall seconds) for every sweep, as a PNG; None (and a
    note in the report) without matplotlib. Static, for the README: plotly's PNG export needs
    a browser."""
    try:
        import matplotlib
    except ImportError:
        note = "no plot: matplotlib is not installed (pip install matplotlib)"
        if note not in report.get("notes", []):
            report.setdefault("notes", []).append(note)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = {k: v for k, v in report["sweeps"].items() if "curve" in v}
    axes_of = [a for a in ("images", "wall_s")
               if any(s["curve"][a] is not None for s in sweeps.values())]
    if not axes_of:
        return None
    fig, axes = plt.subplots(1, len(axes_of), figsize=(5.5 * len(axes_of), 4), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, axis in zip(axes[0], axes_of):
        for name, sweep in sweeps.items():
            variant, _, seed = name.rpartition("-s")
            curve = sweep["curve"]
            if curve[axis] is None:
                continue
            scale = 1e6 if axis == "images" else 60.0
            xs = [0.0] + [x / scale for x in curve[axis]]
            ax.step(xs, [0.0] + curve["hv"], where="post",
                    color=colors[int(seed) % len(colors)],
                    linestyle="-" if variant == "plain" else "--", label=f"{variant}, seed {seed}")
        ax.set_xlabel("million images (train + fine-tune + score)" if axis == "images"
                      else "wall minutes since the first trial started")
        ax.set_ylabel("hypervolume")
        ax.grid(alpha=0.3)
    ref = ", ".join(f"{k} {v:g}" for k, v in report["reference"].items())
    fig.suptitle(f"Hypervolume (reference {ref}) against compute: plain (solid) and "
                 "economical (dashed) sweeps", fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
