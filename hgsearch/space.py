"""Search-space files: parse, validate, hand to Ray Tune and Optuna.

A search space is a YAML file with these sections (``search_spaces/demo.yaml`` is a commented
example)::

    fixed:        {dataset: synthetic, arch: resnet20, epochs: 3}     # trial keys held fixed
    search:                                                           # searched trial keys
      lam:        {loguniform: [1.0e-6, 1.0e-2]}
      mix:        {uniform: [0.0, 1.0]}
      score_samples: {int: [16, 256], log: true}
      reg_levels: {choice: [1, 2]}
      reg_outer:  {choice: [sqrt, square], when: {reg_levels: 2}}   # searched only then
    objectives:   {acc_final: max, params_ratio: min}                 # numeric row columns
    sampler:      {name: tpe, seed: 0, options: {multivariate: true, group: true}}
    num_samples: 8          # searched trials (the baseline comes on top)
    max_concurrent: 2       # trials running at once
    resources: {cpu: 1, gpu: 0}   # per trial; fractions allowed
    retries: 1              # re-runs of a crashed trial
    baseline: true          # also train the unregularized, unpruned network (METHOD.md part 4)

Every key is checked against the trial keys of hgsearch.config (types, ranges, choices), and
every problem of a file is reported at once, one line each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgsearch import config
from hgsearch.errors import UserError

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
MODIFIERS = ("when", "log", "step")
SECTIONS = ("fixed", "search", "objectives", "sampler", "num_samples", "max_concurrent",
            "resources", "retries", "baseline")
DIRECTIONS = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}


# The sweep sets these per trial; a space may not.
SET_BY_SWEEP = ("trial_id", "out_dir")

# METHOD.md part 4: the baseline is the same network and budget without regularization or
# pruning. Keys of these groups are inert there, so a search over them needs no baseline value.
BASELINE_VALUES = {"reg": "none", "lam": 0.0, "prune_ratio": 0.0}
BASELINE_INERT_GROUPS = ("hgsr", "prune")
BASELINE_ID = "baseline"


@dataclass(frozen=True)
class Param:
    """One searched trial key: its distribution and the condition under which it is searched."""

    key: str
    kind: str                       # one of DISTRIBUTIONS
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    log: bool = False
    step: float | int | None = None
    when: tuple[tuple[str, tuple], ...] = ()    # ((key, allowed values), ...)

    def describe(self) -> str:
        if self.kind == "choice":
            text = "choice " + ", ".join(str(c) for c in self.choices)
        else:
            log = " log" if self.log and self.kind == "int" else ""
            step = f" step {self.step:g}" if self.step else ""
            text = f"{self.kind} [{self.low:g}, {self.high:g}]{log}{step}"
        for key, values in self.when:
            text += f" when {key} = {' or '.join(str(v) for v in values)}"
        return text


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    seed: int | None = 0
    options: tuple[tuple[str, Any], ...] = ()


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

    @property
    def metrics(self) -> list[str]:
        return [name for name, _ in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [mode for _, mode in self.objectives]

    def suggest(self, trial: Any) -> None:
        """Optuna define-by-run space: sample each key in file order, conditions permitting."""
        values = dict(self.fixed)
        for p in self.params:
            if not all(_value_of(values, key) in allowed for key, allowed in p.when):
                continue    # not searched in this trial: fixed or default value applies
            if p.kind == "choice":
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
                            options=dict(self.sampler.options))

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
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines


def _value_of(values: Mapping[str, Any], key: str) -> Any:
    return values[key] if key in values else config.FIELDS[key].default


# --------------------------------------------------------------------------- samplers

def sampler_names() -> dict[str, str | None]:
    """Sampler names -> None if usable here, else why not (a missing optional package)."""
    import importlib.util

    names: dict[str, str | None] = {"tpe": None, "nsga2": None, "nsga3": None, "random": None}
    names["gp"] = None if importlib.util.find_spec("scipy") else "needs the scipy package"
    names["auto"] = (None if importlib.util.find_spec("optunahub")
                     else "needs the optunahub package and, once, network access")
    return names


def make_sampler(name: str, *, seed: int | None, options: Mapping[str, Any]) -> Any:
    """An Optuna sampler by name; raises TypeError/ValueError on bad options."""
    import warnings

    import optuna

    if name == "auto":
        import optunahub

        cls = optunahub.load_module("samplers/auto_sampler").AutoSampler
    else:
        cls = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
               "nsga3": optuna.samplers.NSGAIIISampler, "gp": optuna.samplers.GPSampler,
               "random": optuna.samplers.RandomSampler}[name]
    with warnings.catch_warnings():
        # Options such as TPE's group= are marked experimental; the file chose them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(seed=seed, **options)


# --------------------------------------------------------------------------- loading

def find_default_space() -> Path:
    """search_spaces/demo.yaml in the working directory, else beside the package (a checkout)."""
    here = Path(__file__).resolve().parent
    candidates = [Path.cwd() / "search_spaces" / "demo.yaml",
                  here.parent / "search_spaces" / "demo.yaml",
                  here / "search_spaces" / "demo.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise UserError(f"no SPACE given and no demo.yaml found (looked at {looked}); "
                    "pass a search-space file")


def load_space(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Space:
    """Read, validate and parse a search-space file; raise UserError naming every problem.

    ``overrides`` replaces top-level sections (the CLI's --num-samples, --max-concurrent).
    """
    data = config.read_config_file(path)    # UserError if unreadable or not a mapping
    return parse_space({**data, **(overrides or {})}, source=str(path))


def parse_space(data: Mapping[str, Any], *, source: str) -> Space:
    """Validate a search-space mapping and build a Space; raise UserError naming every problem."""
    parser = _Parser(source)
    space = parser.parse(data)
    if parser.problems:
        raise UserError(*parser.problems)
    assert space is not None
    return space


def space_problems(data: Mapping[str, Any], *, source: str) -> list[str]:
    """Every problem of a search-space mapping, one line each (empty when it is valid)."""
    parser = _Parser(source)
    parser.parse(data)
    return parser.problems


class _Parser:
    """Collects every problem of a file instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.failed: set[str] = set()     # searched keys already reported as wrong

    def bad(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def parse(self, data: Mapping[str, Any]) -> Space | None:
        if not isinstance(data, Mapping):
            self.bad("file", "expected a mapping with sections " + ", ".join(SECTIONS))
            return None
        for key in data:
            if key not in SECTIONS:
                self.bad(str(key), "unknown section; allowed: " + ", ".join(SECTIONS))
        fixed = self.fixed(data.get("fixed", {}))
        params = self.search(data.get("search", {}), fixed)
        objectives = self.objectives(data.get("objectives"))
        sampler = self.sampler(data.get("sampler", "tpe"))
        num_samples = self.integer(data, "num_samples", 8, lo=1)
        max_concurrent = self.integer(data, "max_concurrent", 1, lo=1)
        cpu, gpu = self.resources(data.get("resources", {}))
        if gpu == 0 and fixed.get("device") == "cuda":
            self.bad("fixed.device", "cuda needs resources.gpu > 0 (Ray gives a trial only the "
                     "devices it asked for)")
        retries = self.integer(data, "retries", 0, lo=0)
        baseline = self.baseline(data.get("baseline", True), fixed, params)
        self.cross_checks(fixed, params)
        if self.problems:
            return None
        return Space(source=self.source, raw=_plain(dict(data)), fixed=fixed,
                     params=tuple(params), objectives=tuple(objectives), sampler=sampler,
                     num_samples=num_samples, max_concurrent=max_concurrent, cpu=cpu, gpu=gpu,
                     retries=retries, baseline=baseline,
                     notes=tuple(self.notes(sampler, params, num_samples)))

    # ----------------------------------------------------------------- sections

    def fixed(self, raw: Any) -> dict:
        if not isinstance(raw, Mapping):
            self.bad("fixed", "expected a mapping of trial keys to values")
            return {}
        out = {}
        for key, value in raw.items():
            if key in SET_BY_SWEEP:
                self.bad(f"fixed.{key}", "is set by the sweep for each trial; remove it")
                continue
            problem = _key_problem(key, value)
            if problem:
                self.bad(f"fixed.{key}", problem)
            else:
                out[key] = config.coerce(key, value)
        return out

    def search(self, raw: Any, fixed: dict) -> list[Param]:
        if not isinstance(raw, Mapping) or not raw:
            self.bad("search", "expected a mapping of at least one trial key to its "
                     "distribution, e.g. lam: {loguniform: [1.0e-6, 1.0e-2]}")
            return []
        params: list[Param] = []
        for key, spec in raw.items():
            param = self.param(str(key), spec, fixed, params)
            if param is not None:
                params.append(param)
            else:
                self.failed.add(str(key))
        return params

    def param(self, key: str, spec: Any, fixed: dict, earlier: list[Param]) -> Param | None:
        where = f"search.{key}"
        if key not in config.FIELDS:
            self.bad(where, "unknown trial key; `hgsearch keys` lists the allowed keys")
            return None
        if key in SET_BY_SWEEP:
            self.bad(where, "is set by the sweep for each trial; it cannot be searched")
            return None
        if not isinstance(spec, Mapping):
            self.bad(where, "expected a mapping such as {uniform: [low, high]} or "
                     "{choice: [a, b]}; distributions: " + ", ".join(DISTRIBUTIONS))
            return None
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        unknown = [k for k in spec if k not in DISTRIBUTIONS and k not in MODIFIERS]
        for k in unknown:
            self.bad(where, f"unknown entry {k!r}; allowed: "
                     + ", ".join(DISTRIBUTIONS + MODIFIERS))
        if unknown and not kinds:
            return None
        if len(kinds) != 1:
            self.bad(where, "give exactly one distribution of " + ", ".join(DISTRIBUTIONS))
            return None
        kind = kinds[0]
        when = self.when(where, spec.get("when"), fixed, earlier)
        if key in fixed and not when:
            self.bad(where, "is also under fixed; a key may be both only when searched under "
                     "a condition (when:)")
        type_name = _type_name(key)
        if kind == "choice":
            choices = self.choices(where, key, spec["choice"])
            if "log" in spec or "step" in spec:
                self.bad(where, "log and step apply to uniform, loguniform and int only")
            return Param(key, kind, choices=choices, when=when) if choices else None
        wanted = "int" if kind == "int" else "float"
        if type_name != wanted:
            hint = "int" if type_name == "int" else "uniform, loguniform"
            if type_name not in ("int", "float"):
                hint = "choice"
            self.bad(where, f"{kind} needs a {wanted} key; {key} is {type_name}: use {hint}")
            return None
        bounds = self.bounds(where, key, kind, spec[kind])
        if bounds is None:
            return None
        log = kind == "loguniform" or spec.get("log") is True
        if "log" in spec and (kind != "int" or not isinstance(spec["log"], bool)):
            self.bad(where, "log: true|false applies to int only (use loguniform for floats)")
        if log and bounds[0] <= 0:
            self.bad(where, f"a log scale needs low > 0, got {bounds[0]:g}")
            return None
        step = self.step(where, kind, spec.get("step"), bounds, log)
        return Param(key, kind, low=bounds[0], high=bounds[1], log=log, step=step, when=when)

    def bounds(self, where: str, key: str, kind: str, raw: Any) -> tuple | None:
        if not (isinstance(raw, list) and len(raw) == 2):
            self.bad(where, f"{kind} expects [low, high]")
            return None
        values = []
        for bound in raw:
            ok = (isinstance(bound, int) if kind == "int" else isinstance(bound, (int, float)))
            if isinstance(bound, bool) or not ok:
                what = "integers" if kind == "int" else "numbers"
                self.bad(where, f"{kind} bounds must be {what}, got {bound!r}")
                return None
            values.append(int(bound) if kind == "int" else float(bound))
        low, high = values
        problems = [p for p in (config.check(key, low), config.check(key, high)) if p]
        for p in problems:
            self.bad(where, f"range [{low:g}, {high:g}] leaves the key's allowed range: {p}")
        if not low < high:
            self.bad(where, f"{kind} [{low:g}, {high:g}]: low must be below high")
            return None
        return None if problems else (low, high)

    def step(self, where: str, kind: str, raw: Any, bounds: tuple, log: bool) -> Any:
        if raw is None:
            return None
        if kind == "loguniform" or log:
            self.bad(where, "step cannot be combined with a log scale")
            return None
        ok = isinstance(raw, int) if kind == "int" else isinstance(raw, (int, float))
        if isinstance(raw, bool) or not ok or raw <= 0:
            self.bad(where, f"step must be a positive {'integer' if kind == 'int' else 'number'}")
            return None
        span = bounds[1] - bounds[0]
        if not math.isclose(span / raw, round(span / raw), abs_tol=1e-9):
            self.bad(where, f"step {raw:g} must divide high - low = {span:g}")
            return None
        return raw

    def choices(self, where: str, key: str, raw: Any) -> tuple:
        if not isinstance(raw, list) or not raw:
            self.bad(where, "choice expects a non-empty list of values")
            return ()
        out = []
        for value in raw:
            problem = _key_problem(key, value)
            if problem:
                self.bad(where, f"choice {problem}")
                continue
            out.append(config.coerce(key, value))
        if len(set(out)) != len(out):
            self.bad(where, "choice lists a value twice")
            return ()
        return tuple(out) if len(out) == len(raw) else ()

    def when(self, where: str, raw: Any, fixed: dict, earlier: list[Param]) -> tuple:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping) or not raw:
            self.bad(f"{where}.when", "expected a mapping {key: value} or {key: [values]}")
            return ()
        searched = {p.key: p for p in earlier}
        out = []
        for key, allowed in raw.items():
            if key not in config.FIELDS:
                self.bad(f"{where}.when", f"unknown trial key {key!r}")
                continue
            if key not in searched and key not in fixed:
                if key not in self.failed:    # else its own problem is reported already
                    self.bad(f"{where}.when", f"{key} must be searched above this key or fixed")
                continue
            values = allowed if isinstance(allowed, list) else [allowed]
            coerced = []
            for value in values:
                problem = _key_problem(key, value)
                param = searched.get(key)
                if not problem and param is not None and param.kind == "choice" \
                        and config.coerce(key, value) not in param.choices:
                    problem = (f"{key}={value!r} is not among its choices "
                               + ", ".join(str(c) for c in param.choices))
                if problem:
                    self.bad(f"{where}.when", problem)
                else:
                    coerced.append(config.coerce(key, value))
            if coerced:
                out.append((key, tuple(coerced)))
        return tuple(out)

    def objectives(self, raw: Any) -> list[tuple[str, str]]:
        columns = metric_columns()
        allowed = "numeric row columns: " + ", ".join(columns)
        if not isinstance(raw, Mapping) or not raw:
            self.bad("objectives", "expected a mapping such as {acc_final: max, params_ratio: "
                     "min}; " + allowed)
            return []
        out = []
        for name, direction in raw.items():
            if name not in columns:
                self.bad(f"objectives.{name}", "not a numeric column of a trial's row; "
                         + allowed)
            elif str(direction).lower() not in DIRECTIONS:
                self.bad(f"objectives.{name}", f"direction {direction!r}: use max or min")
            else:
                out.append((str(name), DIRECTIONS[str(direction).lower()]))
        return out

    def sampler(self, raw: Any) -> SamplerSpec:
        names = sampler_names()
        allowed = ", ".join(n if why is None else f"{n} ({why})" for n, why in names.items())
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping):
            self.bad("sampler", "expected a name or {name: ..., seed: ..., options: {...}}")
            return SamplerSpec()
        for key in raw:
            if key not in ("name", "seed", "options"):
                self.bad(f"sampler.{key}", "unknown entry; allowed: name, seed, options")
        name, seed, options = str(raw.get("name", "tpe")), raw.get("seed", 0), raw.get("options")
        options = {} if options is None else options
        ok = True
        if names.get(name, "unknown") is not None:
            self.bad("sampler.name", f"{name!r}: allowed here: {allowed}")
            ok = False
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            self.bad("sampler.seed", f"{seed!r}: expected an integer or null")
            ok = False
        if not isinstance(options, Mapping) or not all(
                isinstance(v, (bool, int, float, str, type(None))) for v in options.values()):
            self.bad("sampler.options", "expected a mapping of option names to plain values")
            ok = False
        if not ok:
            return SamplerSpec()
        try:
            make_sampler(name, seed=seed, options=options)
        except (TypeError, ValueError) as err:
            self.bad("sampler.options", f"{name}: {err}")
        return SamplerSpec(name, seed, tuple(sorted(options.items())))

    def integer(self, data: Mapping, key: str, default: int, *, lo: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.bad(key, f"{value!r}: expected an integer >= {lo}")
            return default
        return value

    def resources(self, raw: Any) -> tuple[float, float]:
        if not isinstance(raw, Mapping):
            self.bad("resources", "expected {cpu: N, gpu: N} per trial")
            return 1.0, 0.0
        for key in raw:
            if key not in ("cpu", "gpu"):
                self.bad(f"resources.{key}", "unknown resource; allowed: cpu, gpu")
        values = []
        for key, default in (("cpu", 1.0), ("gpu", 0.0)):
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or value != value:
                self.bad(f"resources.{key}", f"{value!r}: expected a number >= 0")
                value = default
            elif value > 1 and not float(value).is_integer():
                # Ray schedules fractions of one device only.
                self.bad(f"resources.{key}", f"{value!r}: above 1 it must be a whole number")
            values.append(float(value))
        if values == [0.0, 0.0]:
            self.bad("resources", "a trial needs some cpu or gpu")
        return values[0], values[1]

    def baseline(self, raw: Any, fixed: dict, params: list[Param]) -> dict | None:
        """The baseline's trial keys besides ``fixed`` (METHOD.md part 4), None for none."""
        if raw is False or raw is None:
            return None
        overrides = {} if raw is True else raw
        if not isinstance(overrides, Mapping):
            self.bad("baseline", "expected true, false or a mapping of trial keys for it")
            return None
        changes = dict(BASELINE_VALUES)
        for key, value in overrides.items():
            problem = _key_problem(key, value)
            if problem or key in SET_BY_SWEEP or key in BASELINE_VALUES:
                self.bad(f"baseline.{key}", problem or "is set by the sweep for the baseline")
            else:
                changes[key] = config.coerce(key, value)
        for p in params:
            inert = config.FIELDS[p.key].metadata["group"] in BASELINE_INERT_GROUPS
            if not inert and p.key not in fixed and p.key not in overrides:
                self.bad("baseline", f"{p.key} is searched; give the baseline's value "
                         f"(baseline: {{{p.key}: ...}}) so that it trains on the same budget")
        known = config.problems_of(fixed)     # reported under fixed
        for problem in config.problems_of({**fixed, **changes}):
            if problem not in known:
                self.bad("baseline", problem)
        return changes

    def cross_checks(self, fixed: dict, params: list[Param]) -> None:
        """Checks between keys (config.problems_of) at every searched key's end points.

        Runs on the keys that passed their own checks, so it adds to the problems found so far.
        """
        base = config.problems_of(fixed)
        for problem in base:
            self.bad("fixed", problem)
        for p in params:
            corners = p.choices if p.kind == "choice" else (p.low, p.high)
            for value in corners:
                for problem in config.problems_of({**fixed, p.key: value}):
                    if problem not in base:
                        self.bad(f"search.{p.key}", f"at {p.key}={value!r}: {problem}")

    def notes(self, sampler: SamplerSpec, params: list[Param], num_samples: int) -> list[str]:
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


def metric_columns() -> list[str]:
    """The numeric metric columns of a trial's row (hgsearch.results), any of them an objective."""
    import pyarrow as pa

    from hgsearch.results import METRIC_TYPES

    return [name for name, kind in METRIC_TYPES.items() if kind in (pa.float64(), pa.int64())]


def _type_name(key: str) -> str:
    kind = config.FIELDS[key].type
    return kind if isinstance(kind, str) else kind.__name__


def _key_problem(key: Any, value: Any) -> str | None:
    """The problem with one trial key's raw value, or None."""
    try:
        coerced = config.coerce(str(key), value)
    except UserError as err:
        return "; ".join(err.problems)
    return config.check(str(key), coerced)


def _plain(value: Any) -> Any:
    """A YAML value as JSON-safe plain data (dates and other scalars become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
