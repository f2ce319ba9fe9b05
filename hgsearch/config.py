"""Trial keys: one frozen dataclass with flat keys, parsed and validated from YAML or ``--set``.

One key means one thing everywhere: the CLI's ``--set KEY=VALUE``, a YAML config, a search space
and a Parquet column all use these names. ``hgsearch keys`` prints this table; config_file.py reads
them from a YAML file and ``--set`` items.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hgsearch.errors import UserError
from hgsearch.widths import widths_problem

DATASETS = ("synthetic", "cifar10", "cifar100", "tinyimagenet", "imagefolder")
# The CIFAR ResNets and resnet18_small (3x3 stem, 32-64 px), then torchvision's ResNets under
# torchvision's names and parameter names (hgsearch.models; hgsearch.models.ARCHS is the same).
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "wide_resnet50_2")
ARCHS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18_small",
         *TORCHVISION_ARCHS)
MIN_TORCHVISION_IMAGE_SIZE = 32   # they downsample by 32 (hgsearch.models.torchvision_resnet)
REGS = ("none", "l1", "group_lasso", "exclusive", "group_l12")
# Filter-scoring criteria (hgsearch.pruning.criteria.CRITERIA has one object per name).
SCORE_METHODS = ("loss_increase", "l1_norm", "bn_scale", "taylor", "random")

# Names that become file names (trial ids, sweep names): no separators, no dot-files.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")   # \Z: "$" passes a final "\n"


# Groups whose keys change the trained dense network (``dense`` metadata, ``dense_keys``).
DENSE_GROUPS = ("data", "train", "hgsr")


def _key(default: Any, help: str, *, choices: tuple | None = None,
         lo: float | None = None, hi: float | None = None, group: str = "",
         dense: bool | None = None) -> Any:
    # dense: does the key change the dense network HGSR training produces? Default: its group.
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "group": group,
            "dense": group in DENSE_GROUPS if dense is None else dense}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrialConfig:
    """Every setting of one trial; defaults: the method's reference setting, synthetic data."""

    # --- identity and reproducibility
    trial_id: str = _key("", "name of the trial's files; empty: generated (time + random)",
                         group="run")
    seed: int = _key(0, "seed for weight init, batch order, augmentation and scoring sample",
                     group="run", dense=True)
    out_dir: str = _key("results", "folder that receives trials/, curves/ and models/",
                        group="run")
    device: str = _key("auto", "auto: CUDA when present (the GPU Ray assigned), else CPU",
                       choices=("auto", "cpu", "cuda"), group="run")
    precision: str = _key("auto", "auto: bf16 autocast on CUDA, fp32 on CPU; bf16_if_native: "
                          "also bf16 on a CPU with AVX512-BF16 or AMX",
                          choices=("auto", "fp32", "bf16", "bf16_if_native"), group="run")
    channels_last: str = _key("auto", "memory format; auto: on for CUDA and with bf16, else off",
                              choices=("auto", "on", "off"), group="run")
    # A compiled forward computes in another order: not the same network to the last bit.
    compile: bool = _key(False, "torch.compile the training model", group="run", dense=True)
    checkpoint_every: int = _key(5, "epochs between checkpoints of a trial that can be resumed "
                                 "(phase boundaries are always saved; 0: only those)",
                                 lo=0, hi=10_000, group="run")

    # --- data
    dataset: str = _key("synthetic", "which dataset", choices=DATASETS, group="data")
    # dense False: where the files are does not matter, the data fingerprint covers what they hold
    data_dir: str = _key("", "folder holding the dataset in its official layout (not synthetic)",
                         group="data", dense=False)
    image_size: int = _key(32, "side in pixels images are resized to (imagefolder only)",
                           lo=8, hi=512, group="data")
    val_fraction: float = _key(0.1, "share of the training data held out for validation",
                               lo=0.01, hi=0.5, group="data")
    data_seed: int = _key(0, "seed of the synthetic data and of the validation split",
                          group="data")
    synthetic_train_size: int = _key(5000, "synthetic images for training + validation",
                                     lo=100, hi=1_000_000, group="data")
    synthetic_test_size: int = _key(1000, "synthetic images in the test split",
                                    lo=10, hi=1_000_000, group="data")
    cache_dir: str = _key("", "decoded-image cache; empty: $HGSEARCH_CACHE or ~/.cache/hgsearch",
                          group="data", dense=False)
    # dense False: which path ran is in the data fingerprint (streaming hashes its files and recipe)
    data_path: str = _key("auto", "memory: decoded images held on the device (airbench style); "
                          "stream: decoded per batch by worker processes (torchvision's recipe, "
                          "imagefolder only); auto: memory when the decoded data fits "
                          "data_memory_gb", choices=("auto", "memory", "stream"), group="data",
                          dense=False)
    data_memory_gb: float = _key(0.0, "memory budget (GB) of the decoded data on data_path=auto; "
                                 "0: half of the available memory (and of a GPU's free memory)",
                                 lo=0.0, hi=1e6, group="data", dense=False)
    data_workers: int = _key(0, "decoding processes of data_path=stream; 0: one per CPU core "
                             "this process may use, at most 16", lo=0, hi=256, group="data",
                             dense=False)

    # --- model and training
    arch: str = _key("resnet20", "network", choices=ARCHS, group="train")
    # dense False: the path does not matter; the file's sha256 enters the dense address itself
    init_weights: str = _key("", "initial weights: a torchvision-format state dict (.pt/.pth), a "
                             ".safetensors file or an hgsearch model file; empty: random "
                             "initialization (docs/guides/own-network.md)", group="train",
                             dense=False)
    skip_training: bool = _key(False, "with init_weights: no HGSR training, the given network "
                               "goes as it is to scoring (a sweep's pretrained baseline sets it, "
                               "with prune_ratio=0 and finetune_epochs=0)", group="train")
    widths: str = _key("", "inner width of each prunable unit, comma-separated (a pruned row's "
                       "kept_channels, say), from random initialization; empty: the arch's own "
                       "(hgsearch/widths.py)", group="train")
    width_scale: float = _key(1.0, "every inner width x this, rounded, at least 1, from random "
                              "initialization (a uniformly thinner network)", lo=0.0, hi=1.0,
                              group="train")
    epochs: int = _key(5, "training epochs with the regularizer", lo=1, hi=10_000, group="train")
    batch_size: int = _key(128, "images per SGD step", lo=1, hi=65_536, group="train")
    lr: float = _key(0.1, "peak learning rate (per batch_size images)", lo=0.0, hi=1e6,
                     group="train")
    momentum: float = _key(0.9, "SGD momentum", lo=0.0, hi=0.999, group="train")
    nesterov: bool = _key(False, "Nesterov momentum", group="train")
    weight_decay: float = _key(5e-4, "SGD weight decay (L2), on top of the regularizer",
                               lo=0.0, hi=1.0, group="train")
    schedule: str = _key("cosine", "learning-rate schedule: cosine to 0, or x0.1 at 50% and 75%",
                         choices=("cosine", "step"), group="train")
    warmup_epochs: int = _key(0, "epochs of linear lr ramp (lr x step / ramp steps) before the "
                              "schedule (dense training only)", lo=0, hi=10_000, group="train")
    eval_batch_size: int = _key(512, "images per forward in evaluation and scoring",
                                lo=1, hi=65_536, group="train")

    # --- hierarchical group sparse regularization (docs/method.md part 1)
    reg: str = _key("group_l12", "regularizer family", choices=REGS, group="hgsr")
    reg_levels: int = _key(2, "hierarchy levels: 1 flat groups, 2 groups of kernels",
                           choices=(1, 2), group="hgsr")
    reg_outer: str = _key("square", "outer function of a 2-level group (reg_levels=2 only)",
                          choices=("sqrt", "square"), group="hgsr")
    reg_grouping: str = _key("input", "outer group: kernels reading one input channel (input) or "
                             "writing one output filter (output)", choices=("input", "output"),
                             group="hgsr")
    lam: float = _key(1e-4, "regularization weight (search log-uniformly); the same objective "
                      "under either reg_solver", lo=0.0, hi=10.0, group="hgsr")
    mix: float = _key(0.5, "share of R(W) against plain L1 in the penalty", lo=0.0, hi=1.0,
                      group="hgsr")
    zero_tol: float = _key(1e-2, "a group counts as zero when its L2 norm is below zero_tol x the "
                           "layer's largest group norm", lo=0.0, hi=1.0, group="hgsr",
                           dense=False)   # a measurement of the network, recomputed on reuse
    reg_solver: str = _key("subgradient", "how the penalty is minimized: plain subgradients (the "
                           "reference) or a proximal step after each SGD step that sets groups "
                           "exactly to zero, at threshold lr x lam / (1 - momentum) "
                           "(hgsearch/proximal.py)",
                           choices=("subgradient", "proximal"), group="hgsr")
    lam_scale: str = _key("none", "none: lam weighs the penalty as is (the reference); init: the "
                          "penalty is divided by its value at initialization, so one lam range "
                          "fits every architecture", choices=("none", "init"), group="hgsr")

    # --- early stopping of the dense phase (hgsearch/early_stop.py)
    early_stop: bool = _key(False, "stop an HGSR training whose validation accuracy falls behind "
                            "the unregularized network's at a rung (never stops reg=none/lam=0)",
                            group="stop")
    early_stop_ratio: float = _key(0.5, "stop when val accuracy at a rung < this x the "
                                   "unregularized reference's at the same epoch",
                                   lo=0.0, hi=1.0, group="stop")
    early_stop_rungs: int = _key(2, "rungs at epochs round(epochs / 2**k), k = rungs..1",
                                 lo=1, hi=10, group="stop")

    # --- filter scoring and pruning (docs/method.md parts 2 and 3)
    score_samples: int = _key(256, "training images used to score filters", lo=1, hi=1_000_000,
                              group="prune")
    prune_ratio: float = _key(0.5, "fraction removed (of prune_target)", lo=0.0, hi=0.95,
                              group="prune")
    prune_target: str = _key("channels", "what prune_ratio counts",
                             choices=("channels", "params", "macs"), group="prune")
    prune_scope: str = _key("global", "one ranking across layers, or the same ratio per block",
                            choices=("global", "layer"), group="prune")
    prune_steps: int = _key(1, "score-and-remove rounds to reach prune_ratio", lo=1, hi=100,
                            group="prune")
    min_channels: int = _key(1, "channels every block keeps at least", lo=1, hi=4096,
                             group="prune")
    round_to: int = _key(1, "each block's width stays a multiple of this", lo=1, hi=512,
                         group="prune")
    score_method: str = _key("loss_increase", "filter-scoring criterion: the paper's loss "
                             "increase, or a rival (filter L1 norm, BatchNorm |gamma|, first-order "
                             "Taylor, random)", choices=SCORE_METHODS, group="prune")
    bn_recalibrate: int = _key(0, "training images passed in train mode without gradients after "
                               "each pruning round to re-estimate BatchNorm statistics (0: off)",
                               lo=0, hi=1_000_000, group="prune")
    finetune_between: int = _key(0, "fine-tuning epochs between prune_steps rounds (finetune_lr)",
                                 lo=0, hi=10_000, group="prune")

    # --- fine-tuning the compact network
    finetune_epochs: int = _key(3, "epochs of fine-tuning after pruning", lo=0, hi=10_000,
                                group="finetune")
    finetune_lr: float = _key(0.01, "peak learning rate of fine-tuning (cosine to 0)",
                              lo=0.0, hi=1e6, group="finetune")

    # --- measurement
    latency_batch: int = _key(128, "the large batch of the latency measurement", lo=1,
                              hi=65_536, group="measure")
    latency_repeats: int = _key(10, "timed forwards per latency figure (median reported)",
                                lo=1, hi=10_000, group="measure")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        return make_config({**self.to_dict(), **changes})

    @property
    def regularized(self) -> bool:
        """Dense training carries a penalty: reg is not none and lam > 0 (else, as the baseline,
        it trains the plain network)."""
        return self.reg != "none" and self.lam > 0


FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}


def dense_keys() -> tuple[str, ...]:
    """The trial keys that change the trained dense network (metadata ``dense``), in order."""
    return tuple(name for name, f in FIELDS.items() if f.metadata["dense"])


def key_table() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every trial key, in declaration order."""
    rows = []
    for f in dataclasses.fields(TrialConfig):
        meta = f.metadata
        allowed = ""
        if meta["choices"]:
            allowed = " {" + ", ".join(str(c) for c in meta["choices"]) + "}"
        elif meta["lo"] is not None:
            allowed = f" [{meta['lo']:g}, {meta['hi']:g}]"
        rows.append((f.name, type_name(f.name) + allowed, repr(f.default), meta["help"]))
    return rows


def type_name(key: str) -> str:
    """The type of trial key ``key`` as written in TrialConfig: bool, int, float or str."""
    kind = FIELDS[key].type
    return kind if isinstance(kind, str) else kind.__name__


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(key: str, value: Any) -> Any:
    """Convert one value (a YAML scalar or a ``--set`` string) to the key's type, or raise."""
    if key not in FIELDS:
        raise UserError(f"unknown key {key!r}; `hgsearch keys` lists the allowed keys")
    kind = type_name(key)
    text = value.strip() if isinstance(value, str) else None
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if text is not None:
                return int(text)
            raise ValueError
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, float)):
                return float(value)
            if text is not None:
                return float(text)
            raise ValueError
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if key == "widths" and isinstance(value, (list, tuple)):    # YAML's [16, 8, ...]
            return ",".join(str(v) for v in value)
        # YAML 1.1 reads an unquoted on/off as a boolean: give such keys back their word.
        if isinstance(value, bool) and {"on", "off"} <= set(FIELDS[key].metadata["choices"] or ()):
            return "on" if value else "off"
        raise ValueError
    except ValueError:
        raise UserError(f"{key}={value!r}: expected {kind}") from None


def check(key: str, value: Any) -> str | None:
    """The problem with an already-coerced value, or None."""
    meta = FIELDS[key].metadata
    if meta["choices"] and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        return f"{key}={value!r}: allowed values are {allowed}"
    if meta["lo"] is not None and not (meta["lo"] <= value <= meta["hi"]):
        return f"{key}={value!r}: must be between {meta['lo']:g} and {meta['hi']:g}"
    if value != value:  # NaN passes the range check above
        return f"{key}={value!r}: must be a number"
    return None


def image_size_problem(arch: str, image_size: int) -> str | None:
    """Why ``arch`` cannot take ``image_size`` px images (torchvision's downsample by 32), or
    None; the one statement of that rule, before torch is imported."""
    if arch in TORCHVISION_ARCHS and image_size < MIN_TORCHVISION_IMAGE_SIZE:
        return (f"image_size={image_size}: arch={arch} downsamples by 32 and needs "
                f"image_size >= {MIN_TORCHVISION_IMAGE_SIZE}")
    return None


def data_dir_problem(dataset: str, data_dir: str) -> str | None:
    """Why ``data_dir`` cannot serve ``dataset`` before looking at the disk: only empty is."""
    if dataset != "synthetic" and not data_dir:
        return f"data_dir is empty: dataset={dataset} reads its files from data_dir"
    return None


def problems_of(values: Mapping[str, Any]) -> list[str]:
    """Every problem in a mapping of trial keys, one line each (empty when it is valid)."""
    problems: list[str] = []
    coerced: dict[str, Any] = {}
    for key, raw in values.items():
        try:
            coerced[key] = coerce(key, raw)
        except UserError as err:
            problems.extend(err.problems)
            continue
        problem = check(key, coerced[key])
        if problem:
            problems.append(problem)
    if problems:
        return problems
    merged = {**{k: f.default for k, f in FIELDS.items()}, **coerced}
    if merged["trial_id"] and not SAFE_NAME.match(merged["trial_id"]):
        problems.append(f"trial_id={merged['trial_id']!r}: use letters, digits, '.', '_' and '-' "
                        "(at most 128, not starting with '.' or '-')")
    if problem := data_dir_problem(merged["dataset"], merged["data_dir"]):
        problems.append(problem)
    if merged["dataset"] == "imagefolder" and (
            problem := image_size_problem(merged["arch"], merged["image_size"])):
        problems.append(problem)
    if merged["skip_training"] and not merged["init_weights"]:
        problems.append("skip_training=true: only with init_weights (a network to start from)")
    if problem := widths_problem(merged):
        problems.append(problem)
    if merged["warmup_epochs"] >= merged["epochs"]:   # epochs >= 1: no warmup always passes
        problems.append(f"warmup_epochs={merged['warmup_epochs']}: must be less than "
                        f"epochs={merged['epochs']}")
    if merged["min_channels"] % merged["round_to"] and merged["round_to"] > 1:
        problems.append(f"min_channels={merged['min_channels']}: must be a multiple of "
                        f"round_to={merged['round_to']}")
    return problems


def make_config(values: Mapping[str, Any] | None = None) -> TrialConfig:
    """Build a validated TrialConfig from any mapping of keys; raise UserError on every problem."""
    values = dict(values or {})
    problems = problems_of(values)
    if problems:
        raise UserError(*problems)
    return TrialConfig(**{k: coerce(k, v) for k, v in values.items()})
