"""Size and speed of a network: parameters, multiply-accumulates (MACs), measured latency.

One MAC is one multiply-accumulate of a conv or linear layer; BatchNorm, ReLU, additions and
pooling are not counted (docs/method.md, counting). A pruned network's figures are those of the
compact network, never of a masked one (docs/method.md part 3).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import nn

from hgsearch.config import check
from hgsearch.errors import UserError
from hgsearch.models import PrunableNet


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int]) -> int:
    """MACs of one forward of one ``input_size`` (height, width) image."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, out)

    _hooked_forward(model, input_size, (nn.Conv2d, nn.Linear), hook)
    return total


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    per_output = out[0].numel()                     # batch 1: the output's values
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_output * module.in_channels // module.groups * kh * kw
    return per_output * module.in_features         # nn.Linear


class ChannelCost(NamedTuple):
    """What one inner channel of a block costs: parameters and MACs per image."""

    params: int
    macs: int


def inner_channel_costs(model: PrunableNet, input_size: tuple[int, int]) -> list[ChannelCost]:
    """Per prunable unit, the parameters and MACs that removing one of its channels saves.

    One channel is one output filter of the unit's producer conv (in * kh * kw weights and MACs
    per output pixel), its BatchNorm scale and shift, and one input slice of its consumer conv
    (out * kh * kw weights and MACs per output pixel). The cost is the same for every channel of
    a unit, so parameters and MACs fall linearly with the channels removed.
    """
    spatial: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        spatial[module] = out.shape[-2] * out.shape[-1]

    _hooked_forward(model, input_size, (nn.Conv2d,), hook)
    costs = []
    for c1, bn1, c2 in model.units():
        row = c1.in_channels // c1.groups * c1.kernel_size[0] * c1.kernel_size[1]
        col = c2.out_channels * c2.kernel_size[0] * c2.kernel_size[1]
        params = row + col + (c1.bias is not None) + (2 if bn1.affine else 0)
        costs.append(ChannelCost(params, row * spatial[c1] + col * spatial[c2]))
    return costs


class SharedCost(NamedTuple):
    """Two units whose channels meet in one conv: a Bottleneck's conv2 reads unit ``first`` and
    writes unit ``second``. Removing a channels of one and b of the other saves a * b times this
    less than the sum of their ``inner_channel_costs``, which both count those a * b kernels."""

    first: int
    second: int
    params: int
    macs: int


def shared_channel_costs(model: PrunableNet, input_size: tuple[int, int]) -> list[SharedCost]:
    """Every pair of units coupled by a conv that consumes one and produces the other."""
    spatial: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        spatial[module] = out.shape[-2] * out.shape[-1]

    _hooked_forward(model, input_size, (nn.Conv2d,), hook)
    units = model.units()
    produced_by = {unit.producer: u for u, unit in enumerate(units)}
    out = []
    for u, unit in enumerate(units):
        v = produced_by.get(unit.consumer)
        if v is not None:
            kernel = unit.consumer.kernel_size[0] * unit.consumer.kernel_size[1]
            out.append(SharedCost(u, v, kernel, kernel * spatial[unit.consumer]))
    return out


def prunable_group_norms(model: PrunableNet, *, grouping: str) -> list[torch.Tensor]:
    """Per prunable unit, the L2 norm of each HGSR group whose zero frees a prunable filter.

    ``input``: the consumer's group reading channel c (nothing reads the filter then);
    ``output``: the producer's filter c itself. Groups of the stem, of the residual path's
    channels and of a first conv's inputs are left out: no filter pruning can remove them.
    """
    if grouping not in ("input", "output"):
        raise UserError(f"reg_grouping={grouping!r}: allowed values are input, output")
    if grouping == "input":
        return [torch.linalg.vector_norm(u.consumer.weight.detach(), dim=(0, 2, 3))
                for u in model.units()]
    return [torch.linalg.vector_norm(u.producer.weight.detach(), dim=(1, 2, 3))
            for u in model.units()]


@torch.no_grad()
def zero_group_fraction(model: PrunableNet, *, grouping: str, tol: float) -> float:
    """Share of near-zero groups among those whose removal removes a prunable filter.

    A group counts as zero when its norm is below ``tol`` x the largest such group norm of the
    same unit, or exactly 0 (so exact zeros count at tol=0 and in a block zero throughout).
    One group per prunable filter, so the denominator is the number of prunable filters.
    """
    if problem := check("zero_tol", tol):    # the key's one range, declared in TrialConfig
        raise UserError(problem)
    norms = prunable_group_norms(model, grouping=grouping)
    zero = sum(int(((n < tol * n.max()) | (n == 0)).sum()) for n in norms)
    total = sum(n.numel() for n in norms)
    return zero / total if total else math.nan


@torch.no_grad()
def zero_filters(model: PrunableNet) -> list[torch.Tensor]:
    """Per prunable unit, a bool per filter that removal cannot change, whatever the input.

    Filter c of a unit is exactly zero when its consumer reads nothing from it
    (consumer.weight[:, c] all 0) or when it emits 0: producer.weight[c] all 0 with its
    BatchNorm's scale and shift 0 (eval or train mode, any running statistics).
    """
    out = []
    for producer, bn, consumer in model.units():
        unread = (consumer.weight == 0).all(dim=3).all(dim=2).all(dim=0)
        silent = (producer.weight == 0).flatten(1).all(dim=1)
        if producer.bias is not None:
            silent &= producer.bias == 0
        if bn.affine:
            silent &= (bn.weight == 0) & (bn.bias == 0)
        else:
            silent &= torch.zeros_like(silent)   # BN without affine maps 0 to -mean/std
        out.append((unread | silent).cpu())
    return out


def nonzero_keep(model: PrunableNet) -> list[list[int]]:
    """Per unit, the filters to keep when only the exactly-zero ones go (``prune_model``'s
    ``keep``; one filter stays in a unit zero throughout, as a unit needs a channel)."""
    return [(~z).nonzero().flatten().tolist() or [0] for z in zero_filters(model)]


def zero_filter_fraction(model: PrunableNet) -> float:
    """Share of prunable filters that are exactly zero (``zero_filters``)."""
    flags = torch.cat(zero_filters(model))
    return flags.double().mean().item() if len(flags) else math.nan


def _hooked_forward(model: nn.Module, input_size: tuple[int, int], kinds: tuple[type, ...],
                    hook: Callable) -> None:
    """One eval-mode forward of a batch of one zero image with ``hook`` on modules of ``kinds``."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    param = next(model.parameters())
    x = torch.zeros(1, first.in_channels, *input_size, device=param.device, dtype=param.dtype)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def measure_latency(model: nn.Module, *, input_size: tuple[int, int], batch_size: int,
                    device: str | torch.device, repeats: int, warmup: int = 3,
                    channels_last: bool = False, dtype: torch.dtype | None = None) -> float:
    """Median seconds of one eval-mode, no-grad forward of ``batch_size`` random images.

    Runs on a copy of ``model`` moved to ``device`` (and to channels_last memory format when
    asked); ``dtype`` (e.g. torch.bfloat16) runs the forward under autocast to that dtype, as
    training does. On CUDA every timed forward ends with a synchronize.
    """
    _check_timing(repeats, batch_size, warmup)
    timer = _Timer(device, channels_last, dtype)
    net = timer.prepare(model)
    x = timer.batch(net, batch_size, input_size)
    times = timer.run([net], x, warmup=warmup, repeats=repeats)[0]
    return statistics.median(times)


class Timing(NamedTuple):
    """Median and interquartile range (q3 - q1) of timed forwards, in seconds."""

    median: float
    iqr: float          # NaN under MIN_SPREAD_REPEATS timed forwards: no spread to speak of


class PairTiming(NamedTuple):
    """A dense and a pruned network timed interleaved (``measure_latency_pair``)."""

    dense: Timing
    pruned: Timing

    @property
    def significant(self) -> bool | None:
        """True when the medians differ by more than the larger IQR: the difference is more
        than the timings' own spread. None when the spread was not measured."""
        spread = max(self.dense.iqr, self.pruned.iqr)
        if math.isnan(spread):
            return None
        return abs(self.dense.median - self.pruned.median) > spread


# Quartiles of fewer timings are the timings themselves: no spread is stated below this.
MIN_SPREAD_REPEATS = 5


def measure_latency_pair(dense: nn.Module, pruned: nn.Module, *, input_size: tuple[int, int],
                         batch_size: int, device: str | torch.device, repeats: int,
                         warmup: int = 3, channels_last: bool = False,
                         dtype: torch.dtype | None = None) -> PairTiming:
    """Time ``dense`` and ``pruned`` interleaved in this process: the same input batch, the
    same threads and settings, ``warmup`` untimed forwards of each first, then ``repeats``
    rounds of one forward of each, the order alternating between rounds so neither always
    runs second (warm caches, clock boosts). Load that comes and goes hits both alike."""
    _check_timing(repeats, batch_size, warmup)
    timer = _Timer(device, channels_last, dtype)
    nets = [timer.prepare(dense), timer.prepare(pruned)]
    x = timer.batch(nets[0], batch_size, input_size)
    times = timer.run(nets, x, warmup=warmup, repeats=repeats)
    return PairTiming(*(_timing(t) for t in times))


def _timing(times: list[float]) -> Timing:
    if len(times) < MIN_SPREAD_REPEATS:
        return Timing(statistics.median(times), math.nan)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Timing(statistics.median(times), q3 - q1)


def _check_timing(repeats: int, batch_size: int, warmup: int) -> None:
    if repeats < 1 or batch_size < 1 or warmup < 0:
        raise ValueError("measure_latency: repeats and batch_size >= 1, warmup >= 0")


class _Timer:
    """Copies of networks on one device, one input batch, and forwards timed in turn."""

    def __init__(self, device: str | torch.device, channels_last: bool,
                 dtype: torch.dtype | None) -> None:
        self.device, self.channels_last, self.dtype = torch.device(device), channels_last, dtype

    def prepare(self, model: nn.Module) -> nn.Module:
        net = copy.deepcopy(model).to(self.device).eval()
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def batch(self, net: nn.Module, batch_size: int, input_size: tuple[int, int]) -> torch.Tensor:
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        own = next(net.parameters()).dtype
        x = torch.randn(batch_size, first.in_channels, *input_size, device=self.device,
                        dtype=own)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def run(self, nets: list[nn.Module], x: torch.Tensor, *, warmup: int,
            repeats: int) -> list[list[float]]:
        """Seconds of each timed forward, per network; round i runs them reversed on odd i."""
        plain = self.dtype is None or self.dtype == x.dtype
        cast = nullcontext() if plain else torch.autocast(self.device.type, dtype=self.dtype)
        times: list[list[float]] = [[] for _ in nets]
        with torch.inference_mode(), cast:
            for i in range(warmup + repeats):
                order = range(len(nets)) if i % 2 == 0 else reversed(range(len(nets)))
                for j in order:
                    self.sync()
                    start = time.perf_counter()
                    nets[j](x)
                    self.sync()
                    if i >= warmup:
                        times[j].append(time.perf_counter() - start)
        return times

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
