"""Model files written before torchvision's ResNets (format v1) still load."""

from __future__ import annotations

import pytest
import torch

from hgsearch.errors import UserError
from hgsearch.models import build_model, load_model


def v1_file(path, arch: str, model: torch.nn.Module, widths: list[int]) -> None:
    torch.save({"format": "hgsearch-model-v1", "arch": arch, "num_classes": 10,
                "widths": widths, "state_dict": model.state_dict(), "extra": {}}, path)


def test_a_v1_resnet18_file_loads_as_resnet18_small(tmp_path):
    small = build_model("resnet18_small", 10, [4] * 8).eval()
    v1_file(tmp_path / "old.pt", "resnet18", small, [4] * 8)
    again = load_model(tmp_path / "old.pt")
    assert again.arch == "resnet18_small"
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), small(x))


def test_an_unknown_arch_gets_a_one_line_hint(tmp_path):
    v1_file(tmp_path / "odd.pt", "resnet7", build_model("resnet20", 10), [16] * 9)
    with pytest.raises(UserError, match="arch 'resnet7' is unknown to this hgsearch") as err:
        load_model(tmp_path / "odd.pt")
    assert "\n" not in str(err.value)
