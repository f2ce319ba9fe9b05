"""The scoring benchmark: its MAC shares in closed form, its figures scaled from a subset."""

from __future__ import annotations

import math

import pytest

from hgsearch.bench.scoring import measure_scoring_speedup, suffix_shares
from hgsearch.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")   # see harness.auto_threads


@pytest.mark.parametrize("arch", ["resnet20", "resnet32"])
def test_suffix_shares_in_closed_form(arch):
    """MACs per layer from the CIFAR ResNet's shapes (He et al. 2016, 4.2), 32x32 input."""
    model = build_model(arch, 10)
    n = (int(arch[6:]) - 2) // 6
    blocks = []
    for stage, (ch, side) in enumerate(zip((16, 32, 64), (32, 16, 8))):
        for b in range(n):
            cin = ch // 2 if stage > 0 and b == 0 else ch
            macs = side * side * ch * (cin * 9 + ch * 9)          # conv1 + conv2
            if cin != ch:
                macs += side * side * ch * cin                    # 1x1 projection shortcut
            blocks.append(macs)
    stem, head = 32 * 32 * 16 * 3 * 9, 64 * 10
    total = stem + sum(blocks) + head
    expected = [(sum(blocks[b + 1:]) + head) / total for b in range(len(blocks))]
    assert suffix_shares(model, (32, 32)) == pytest.approx(expected, rel=1e-12)


def test_scoring_speedup_scaled_from_a_subset_of_samples():
    r = measure_scoring_speedup("resnet20", 8, batch_size=64, input_size=(8, 8),
                                reference_filters=3, fast_samples=4, rounds=2)
    assert r["fast_estimated"] and r["fast_samples_timed"] == 4 and r["rounds"] == 2
    assert r["max_diff_rel_to_max_delta"] < 1e-4
    assert math.isfinite(r["speedup"]) and r["speedup_cpu"] > 0
    assert r["pairs_per_s"] == pytest.approx(8 * r["filters"] / r["fast_s"])
    assert r["filters_per_forward"] == pytest.approx(r["pairs_per_s"]
                                                     / r["inference_images_per_s"])
