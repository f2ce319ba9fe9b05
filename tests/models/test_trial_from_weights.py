"""Acceptance: a trial from the user's resnet50 weights on their image folder, then the selected
model's model.pt and model.onnx predict the same classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from hgsearch.cli import main
from hgsearch.config import make_config
from hgsearch.data import load_dataset
from hgsearch.models import build_model
from hgsearch.models.weights import weights_sha256
from hgsearch.predict import predict
from hgsearch.results import load_results
from tests.data_fixtures import write_imagefolder


def normalized(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    return (x_uint8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def users_network(tmp_path_factory):
    """An image folder and a resnet50 state dict trained a few SGD steps on it (not random)."""
    root = tmp_path_factory.mktemp("user")
    write_imagefolder(root / "data", size=64, train_per_class=6, val_per_class=3)
    cfg = make_config({"dataset": "imagefolder", "data_dir": str(root / "data"),
                       "image_size": 64, "cache_dir": str(root / "cache")})
    data = load_dataset(cfg)
    torch.manual_seed(0)
    net = build_model("resnet50", data.num_classes)   # the torchvision layout and names
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = normalized(data.train_x, data.mean, data.std)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net.train()(x), data.train_y).backward()
        opt.step()
    torch.save(net.state_dict(), root / "w.pth")
    return root, net.eval(), data


@pytest.mark.slow   # a full-width resnet50 at 64 px on CPU: minutes on one shared core
def test_trial_from_weights_records_them_and_its_selected_model_predicts(users_network,
                                                                         tmp_path, capsys):
    root, net, data = users_network
    out = tmp_path / "results"
    status = main(["trial", "--out", str(out), "--set", "arch=resnet50",
                   f"init_weights={root / 'w.pth'}", "dataset=imagefolder",
                   f"data_dir={root / 'data'}", "image_size=64", f"cache_dir={root / 'cache'}",
                   "device=cpu", "epochs=1", "finetune_epochs=1", "batch_size=6", "lr=0.01",
                   "finetune_lr=0.001", "prune_ratio=0.3", "score_method=l1_norm",
                   "latency_repeats=1", "latency_batch=2", "eval_batch_size=32",
                   "trial_id=mine"])
    assert status == 0, capsys.readouterr().err
    row = load_results(out).iloc[0]
    assert row.init_weights_sha256 == weights_sha256(root / "w.pth")
    assert pd.isna(row.init_weights_note)       # 3 classes in the file and in the folder
    # The network as given, evaluated by hand on the same images (val = test for a folder).
    with torch.no_grad():
        given = (net(normalized(data.val_x, data.mean, data.std)).argmax(1) == data.val_y)
    assert row.acc_init == pytest.approx(given.float().mean().item(), abs=1e-6)
    assert row.params_final < row.params_dense
    assert len(row.widths_dense) == 32 and list(row.kept_channels) != list(row.widths_dense)

    assert main(["select", str(out), "--rule", "knee"]) == 0
    selected = out / "selected"
    images = [str(p) for p in sorted((root / "data" / "val").rglob("*"))
              if p.suffix.lower() in (".png", ".jpg", ".jpeg") and not p.name.startswith(".")]
    extra = torch.load(selected / "model.pt", weights_only=True)["extra"]
    assert extra["resize_side"] == round(64 / 0.875)        # as the folder was resized
    pt = predict(selected / "model.pt", images)
    onnx = predict(selected / "model.onnx", images)
    assert [p.label for p in pt] == [p.label for p in onnx]
    assert np.allclose([p.probability for p in pt], [p.probability for p in onnx], atol=1e-4)
    capsys.readouterr()
    assert main(["predict", str(selected / "model.onnx"), *images[:2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [p.label for p in pt[:2]]
