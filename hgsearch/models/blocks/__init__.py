"""Residual block kinds behind one interface: what a block exposes to the method.

A block has one or more prunable *units*. A unit is an inner width: a producer conv whose output
filters are the unit's channels, the BatchNorm after it (then a ReLU), and the consumer conv that
reads those channels. Filter pruning (docs/method.md parts 2 and 3) removes a unit's channels:
the producer's output rows, the BatchNorm's entries and the consumer's input columns.

Every block kind (basic.py, bottleneck.py) implements ``Block``; scoring, selection, surgery, the
regularizer and the size counts only go through it, so a new family (an inverted residual, say)
is one more module here.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn


class Unit(NamedTuple):
    """One prunable inner width: producer conv -> bn -> ReLU -> consumer conv."""

    producer: nn.Conv2d
    bn: nn.BatchNorm2d
    consumer: nn.Conv2d


class Block(Protocol):
    """A residual block: relu(path(x) + shortcut(x)), its path a chain of conv -> BN pairs with a
    ReLU between consecutive pairs; the output of every pair but the last is a prunable unit."""

    n_units: int     # prunable inner widths per block of this kind

    def units(self) -> list[Unit]:
        """The block's prunable units, in forward order."""

    def path(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The residual path's conv -> BN pairs in forward order (len(units()) + 1 of them)."""

    def shortcut_pair(self) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
        """The projection shortcut's conv and BN, or None for the identity."""

    def activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(each unit's post-ReLU activation, the block's output) for input x."""


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """A 1x1 conv + BN shortcut where the shape changes, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


def pair_of(shortcut: nn.Module | None) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The (conv, bn) of a projection made by ``projection``; None for an identity."""
    if shortcut is None or isinstance(shortcut, nn.Identity):
        return None
    return shortcut[0], shortcut[1]
