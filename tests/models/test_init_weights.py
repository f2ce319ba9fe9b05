"""init_weights: the user's own weights, checked, hashed, and a trial that starts from them."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from hgsearch.cli import main
from hgsearch.config import make_config
from hgsearch.dense_store import dense_key
from hgsearch.errors import UserError
from hgsearch.models import build_model, save_model
from hgsearch.models.weights import initial_model, weights_sha256
from hgsearch.runtime import resolve_runtime

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tv18(tmp_path_factory):
    """A torchvision resnet18 state dict with random BatchNorm statistics, and its file."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "r18.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def same_weights(a: torch.nn.Module, b: dict[str, torch.Tensor], skip=()) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.state_dict().items() if k not in skip)


def test_a_checkpoint_without_batch_counts_loads_as_strict_load_state_dict_loads_it(tv18, tmp_path):
    # BatchNorm's num_batches_tracked came later; torch's own strict load fills it in, so must we.
    net, _ = tv18
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(state, strict=True)       # what torch accepts
    torch.save(state, tmp_path / "old.pth")
    given = initial_model(tmp_path / "old.pth", "resnet18", 1000)
    assert all(torch.equal(given.model.state_dict()[k], v) for k, v in state.items())
    assert set(given.model.state_dict()) - set(state) == {
        k for k in reference.state_dict() if k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module.", "safetensors"])
def test_every_accepted_format_loads_the_same_weights(tv18, tmp_path, wrap):
    net, _ = tv18
    state = net.state_dict()
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pt")
    if wrap == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        payload = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3},
                   "model": {"model": state}, "module.": {f"module.{k}": v
                                                          for k, v in state.items()}}[wrap]
        torch.save(payload, path)
    given = initial_model(path, "resnet18", 1000)
    assert given.note == "" and same_weights(given.model, state)
    assert given.sha256 == weights_sha256(path)


def test_an_hgsearch_model_file_loads_at_its_own_widths(tmp_path):
    model = build_model("resnet50", 5, [3] * 32)
    save_model(model, tmp_path / "m.pt")
    given = initial_model(tmp_path / "m.pt", "resnet50", 5)
    assert given.model.widths == [3] * 32 and same_weights(given.model, model.state_dict())
    with pytest.raises(UserError, match="holds an hgsearch resnet50 model, the trial's "
                                        "arch=resnet101"):
        initial_model(tmp_path / "m.pt", "resnet101", 5)


def test_a_classifier_of_another_size_is_replaced_and_said(tv18):
    net, path = tv18
    torch.manual_seed(7)
    fresh_fc = build_model("resnet18", 3).fc.weight.clone()
    torch.manual_seed(7)
    given = initial_model(path, "resnet18", 3)
    assert "fc replaced" in given.note and "1000 classes" in given.note and "data 3" in given.note
    assert same_weights(given.model, net.state_dict(), skip=("fc.weight", "fc.bias"))
    assert torch.equal(given.model.fc.weight, fresh_fc)     # the seeded fresh initialization


@pytest.mark.parametrize("case,fragment", [
    ("missing", "no such file"),
    ("garbage", "not a state dict torch.load(weights_only=True) can read"),
    ("pickled module", "save model.state_dict(), not the model"),
    ("resnet18 into resnet50", "missing key 'layer1.0.conv3.weight' of shape (256, 64, 1, 1)"),
    ("resnet50 into resnet34", "unexpected key 'layer1.0.conv3.weight' of shape (256, 64, 1, 1)"),
    ("shape", "'conv1.weight' has shape (64, 3, 3, 3) in the file, resnet18 expects "
              "(64, 3, 7, 7)"),
    ("not tensors", "expected a state dict"),
])
def test_bad_weights_are_one_line_user_errors(tv18, tmp_path, case, fragment):
    net, good = tv18
    path = tmp_path / "w.pt"
    arch = "resnet18"
    if case == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif case == "pickled module":
        torch.save(net, path)
    elif case == "resnet18 into resnet50":
        path, arch = good, "resnet50"
    elif case == "resnet50 into resnet34":
        torch.save(build_model("resnet50", 10).state_dict(), path)
        arch = "resnet34"
    elif case == "shape":
        state = dict(net.state_dict())
        state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
        torch.save(state, path)
    elif case == "not tensors":
        torch.save({"a": 1}, path)
    with pytest.raises(UserError) as err:
        initial_model(path, arch, 10)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_file_hash_is_in_the_dense_address_not_the_path(tv18, tmp_path):
    _, path = tv18
    copy = tmp_path / "elsewhere.pth"
    shutil.copy(path, copy)
    other = tmp_path / "other.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), other)
    runtime = resolve_runtime("cpu", "fp32", "off")
    fingerprint = "0" * 64

    def key(weights: str) -> str:
        cfg = make_config({"arch": "resnet18", "init_weights": weights})
        return dense_key(cfg, None, runtime, fingerprint=fingerprint)

    assert key(str(path)) == key(str(copy))
    assert key(str(path)) != key(str(other))
    assert key(str(path)) != dense_key(make_config({"arch": "resnet18"}), None, runtime,
                                       fingerprint=fingerprint)


def test_image_size_below_32_is_refused_for_torchvision_resnets():
    with pytest.raises(UserError, match="image_size=24: arch=resnet50 downsamples by 32"):
        make_config({"arch": "resnet50", "dataset": "imagefolder", "data_dir": "d",
                     "image_size": 24})
    make_config({"arch": "resnet18_small", "dataset": "imagefolder", "data_dir": "d",
                 "image_size": 24})


def test_bad_weights_at_the_cli_exit_2_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    status = main(["trial", "--out", str(out), "--set", "arch=resnet50", "device=cpu",
                   f"init_weights={tmp_path / 'nope.pth'}", f"cache_dir={tmp_path / 'c'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "nope.pth" in err[0] and "no such file" in err[0]
    assert not out.exists() and not (tmp_path / "c").exists()
