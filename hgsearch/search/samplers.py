"""Optuna samplers by name, and the ``sampler:`` section of a search-space file.

``auto`` is OptunaHub's AutoSampler: code fetched from the OptunaHub repository on GitHub and
run in the driver. It is made only when the file says ``fetch: true`` and only when a sweep
starts, never while a file is validated (nothing fetches code unless asked for exactly that).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hgsearch.errors import UserError

if TYPE_CHECKING:   # space.py imports this module: the arrow runs one way
    from hgsearch.search.space import Param

BUILT_IN = ("tpe", "nsga2", "nsga3", "random", "gp")
SAMPLER_KEYS = ("name", "seed", "options", "fetch")


@dataclass(frozen=True)
class SamplerSpec:
    """A space file's ``sampler:`` section, validated; ``make_sampler`` builds the sampler."""

    name: str = "tpe"
    seed: int | None = 0
    options: tuple[tuple[str, Any], ...] = ()
    fetch: bool = False          # the file allows code fetched from OptunaHub (name: auto)


def sampler_names() -> dict[str, str | None]:
    """Sampler names -> None if usable here, else why not (a missing optional package)."""
    names: dict[str, str | None] = {"tpe": None, "nsga2": None, "nsga3": None, "random": None}
    names["gp"] = None if importlib.util.find_spec("scipy") else "needs the scipy package"
    names["auto"] = (None if importlib.util.find_spec("optunahub")
                     else "needs the optunahub package and, once, network access")
    return names


def sampler_class(name: str, *, fetch: bool) -> Any:
    """The sampler class of ``name``; ``auto`` is fetched from OptunaHub only with ``fetch``."""
    import optuna

    if name == "auto":
        if not fetch:
            raise UserError("sampler.name 'auto': AutoSampler is code fetched from OptunaHub "
                            "(GitHub) and run here; add fetch: true to the sampler section to "
                            "allow exactly that")
        import optunahub

        return optunahub.load_module("samplers/auto_sampler").AutoSampler
    return {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
            "nsga3": optuna.samplers.NSGAIIISampler, "gp": optuna.samplers.GPSampler,
            "random": optuna.samplers.RandomSampler}[name]


def make_sampler(name: str, *, seed: int | None, options: Mapping[str, Any],
                 fetch: bool = False) -> Any:
    """An Optuna sampler by name; raises TypeError/ValueError on bad options."""
    import optuna

    cls = sampler_class(name, fetch=fetch)
    with warnings.catch_warnings():
        # Options such as TPE's group= are marked experimental; the file chose them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(seed=seed, **options)


def parse_sampler(raw: Any, bad: Callable[[str, str], None]) -> SamplerSpec:
    """The ``sampler:`` section (a name or a mapping); each problem goes to ``bad``.

    Built-in samplers are made once with the options, so a wrong option is reported now;
    ``auto`` is not, because making it fetches code.
    """
    names = sampler_names()
    allowed = ", ".join(n if why is None else f"{n} ({why})" for n, why in names.items())
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        bad("sampler", "expected a name or {name: ..., seed: ..., options: {...}}")
        return SamplerSpec()
    for key in raw:
        if key not in SAMPLER_KEYS:
            bad(f"sampler.{key}", "unknown entry; allowed: " + ", ".join(SAMPLER_KEYS))
    name, seed, options = str(raw.get("name", "tpe")), raw.get("seed", 0), raw.get("options")
    options = {} if options is None else options
    fetch = raw.get("fetch", False)
    ok = True
    if names.get(name, "unknown") is not None:
        bad("sampler.name", f"{name!r}: allowed here: {allowed}")
        ok = False
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        bad("sampler.seed", f"{seed!r}: expected an integer or null")
        ok = False
    if not isinstance(fetch, bool):
        bad("sampler.fetch", f"{fetch!r}: expected true or false")
        ok = False
    elif name == "auto" and not fetch:
        bad("sampler.name", "'auto': AutoSampler is code fetched from OptunaHub (GitHub) and run "
            "here; add fetch: true to the sampler section to allow exactly that")
        ok = False
    if not isinstance(options, Mapping) or not all(
            isinstance(v, (bool, int, float, str, type(None))) for v in options.values()):
        bad("sampler.options", "expected a mapping of option names to plain values")
        ok = False
    if not ok:
        return SamplerSpec()
    if name in BUILT_IN:
        try:
            make_sampler(name, seed=seed, options=options)
        except (TypeError, ValueError) as err:
            bad("sampler.options", f"{name}: {err}")
    return SamplerSpec(name, seed, tuple(sorted(options.items())), fetch)


def sampler_notes(sampler: SamplerSpec, params: Sequence[Param], num_samples: int) -> list[str]:
    """Advice on a sampler choice that is no error (shown by validate and the sweep)."""
    options = dict(sampler.options)
    notes = []
    if sampler.name in ("nsga2", "nsga3"):
        population = options.get("population_size", 50)
        if num_samples <= population:
            notes.append(f"{sampler.name}'s first generation ({population} trials) is "
                         f"random sampling; with num_samples={num_samples} this is a "
                         "random search")
    if sampler.name == "tpe" and any(p.when for p in params) \
            and options.get("multivariate") and not options.get("group"):
        notes.append("multivariate TPE samples conditional keys independently unless "
                     "group: true")
    return notes
