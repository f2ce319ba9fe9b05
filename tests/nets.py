"""Networks for the pruning tests: ResNets whose BatchNorms are not the identity.

A freshly built ResNet has BatchNorms with mean 0, variance 1, scale 1 and shift 0, which hide a
wrong copy of a channel or a wrong fold; these draw them at random (seeded) instead.
"""

from __future__ import annotations

import torch

from hgsearch.models import build_model


def randomized_net(arch: str = "resnet20", seed: int = 0, *, classes: int = 10,
                   scale: tuple[float, float] = (0.5, 1.0),
                   shift: tuple[float, float] | None = (-0.2, 0.2),
                   sharpen: float = 1.0, batches_tracked: int | None = None) -> torch.nn.Module:
    """``arch`` with random BatchNorm statistics, scale and (unless None) shift, in eval mode.

    ``sharpen`` multiplies the classifier's weights (sharper logits make loss changes larger);
    ``batches_tracked`` sets each BatchNorm's counter (so a copy that skips buffers shows).
    """
    torch.manual_seed(seed)
    model = build_model(arch, classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(*scale)
            if shift is not None:
                m.bias.data.uniform_(*shift)
            if batches_tracked is not None:
                m.num_batches_tracked.fill_(batches_tracked)
    if sharpen != 1.0:
        model.fc.weight.data *= sharpen
    return model.eval()


def scoring_sample(n: int, size: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` float64 images of ``size`` px and labels (seeded): the scoring tests' sample."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=gen)


def reference_scores(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The slow reference deltas of ``net`` in float64, on one thread (reproducible sums)."""
    from hgsearch.pruning.scoring import score_filters_reference

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return score_filters_reference(net.double(), x, y, batch_size=64)
    finally:
        torch.set_num_threads(before)
