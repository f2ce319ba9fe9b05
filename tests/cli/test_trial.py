"""``hgsearch trial`` and ``hgsearch keys``: rows written, exit codes, one-line user errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from hgsearch.cli import main
from tests.cli.helpers import run_cli
from tests.conftest import TINY


def as_args(values: dict) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


def test_trial_command_writes_a_row(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["trial", "--set", *as_args({**TINY, "trial_id": "cli1",
                                             "cache_dir": tmp_path / "c"}), "--out", str(out)])
    assert code == 0
    assert "epoch 1/1" in capsys.readouterr().out
    df = pd.read_parquet(out / "trials" / "cli1.parquet")
    assert df.status[0] == "ok" and df.trial_id[0] == "cli1"


def test_config_file_and_set_combine(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()) + "epochs: 5\n")
    out = tmp_path / "res"
    code = main(["trial", "--config", str(cfg), "--set", "epochs=1", "trial_id=combo",
                 f"cache_dir={tmp_path / 'c'}", f"out_dir={out}"])
    assert code == 0
    assert pd.read_parquet(out / "trials" / "combo.parquet").epochs[0] == 1


def test_diverged_trial_exits_1_with_its_row(tmp_path):
    out = tmp_path / "res"
    code = main(["trial", "--set", *as_args({**TINY, "lr": 1e6, "trial_id": "div",
                                             "cache_dir": tmp_path / "c"}), "--out", str(out)])
    assert code == 1
    assert pd.read_parquet(out / "trials" / "div.parquet").status[0] == "diverged"


@pytest.mark.parametrize("settings,fragment", [
    (["lamb=1"], "unknown key 'lamb'"),
    (["epochs=two"], "epochs='two': expected int"),
    (["prune_ratio=1.5"], "prune_ratio=1.5: must be between 0 and 0.95"),
    (["dataset=cifar10", "data_dir=/nonexistent/folder"], "/nonexistent/folder"),
    (["dataset=tinyimagenet", "data_dir=/nonexistent/folder"], "/nonexistent/folder"),
    (["dataset=imagefolder", "data_dir=/nonexistent/folder"], "/nonexistent/folder"),
    (["epochs"], "expected KEY=VALUE"),
    (["data_path=stream"], "data_path=stream: dataset=synthetic is always held in memory"),
    (["data_workers=999"], "data_workers=999: must be between 0 and 256"),
    (["data_path=disk"], "data_path='disk': allowed values are auto, memory, stream"),
    (["data_memory_gb=-1"], "data_memory_gb=-1.0: must be between 0 and"),
])
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, settings, fragment):
    result = run_cli("trial", "--set", *settings, f"out_dir={tmp_path / 'res'}",
                     f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hgsearch: error: ")
    assert fragment in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "res").exists() and not (tmp_path / "c").exists()


def test_missing_config_file(tmp_path):
    result = run_cli("trial", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml: no such config file" in result.stderr


def _key_entries(out: str) -> list[str]:
    """The key names of ``hgsearch keys``'s output: lines not indented, not header or group."""
    from hgsearch.config import FIELDS

    names = [line.split()[0] for line in out.splitlines()
             if line and not line[0].isspace() and line.split()[0] in FIELDS]
    return names


def test_keys_lists_every_key_once_in_lines_of_100_columns_at_most(capsys):
    from hgsearch.config import FIELDS

    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "TYPE", "DEFAULT", "MEANING"]
    assert sorted(_key_entries(out)) == sorted(FIELDS)
    assert max(len(line) for line in lines) <= 100
    # every word of every meaning is printed (wrapped, not cut)
    text = " ".join(out.split())
    for field in FIELDS.values():
        assert " ".join(field.metadata["help"].split()) in text, field.name
    groups = {f.metadata["group"] for f in FIELDS.values()}
    assert {line.strip("[]") for line in lines if line.startswith("[")} == groups


def test_keys_filter_by_word_and_group(capsys):
    from hgsearch.config import FIELDS

    assert main(["keys", "lam"]) == 0
    assert sorted(_key_entries(capsys.readouterr().out)) == sorted(k for k in FIELDS
                                                                   if "lam" in k)
    assert main(["keys", "--group", "hgsr"]) == 0
    hgsr = [k for k, f in FIELDS.items() if f.metadata["group"] == "hgsr"]
    assert _key_entries(capsys.readouterr().out) == hgsr and "lam" in hgsr
    assert main(["keys", "hgsr", "epochs"]) == 0     # a group word, or part of a name
    assert set(_key_entries(capsys.readouterr().out)) == {*hgsr, *(k for k in FIELDS
                                                                   if "epochs" in k)}
    for args, fragment in ((["keys", "nosuchkey"], "no trial key matches nosuchkey"),
                           (["keys", "--group", "nope"], "--group nope: no such group")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err


def test_dir_of_the_package_lists_the_lazy_api():
    result = subprocess.run([sys.executable, "-c", "import hgsearch; print(' '.join(dir("
                             "hgsearch)))"], capture_output=True, text=True, check=True)
    names = result.stdout.split()
    assert {"load_results", "run_trial", "load_model", "make_config", "__version__"} <= set(names)
    import hgsearch

    assert all(hasattr(hgsearch, name) for name in hgsearch.__all__)


@pytest.mark.parametrize("dataset", ["tinyimagenet", "imagefolder", "cifar10", "cifar100"])
def test_trial_on_each_on_disk_layout(tmp_path, dataset):
    from tests.data_fixtures import write_cifar, write_imagefolder, write_tinyimagenet

    root = tmp_path / "data"
    if dataset == "tinyimagenet":
        write_tinyimagenet(root, train_per_class=6)
    elif dataset == "imagefolder":
        write_imagefolder(root, size=40, train_per_class=6)
    else:
        write_cifar(root, variant=dataset)
    out = tmp_path / "res"
    code = main(["trial", "--set", f"dataset={dataset}", f"data_dir={root}", "epochs=1",
                 "batch_size=4", "score_samples=8", "finetune_epochs=1", "latency_repeats=1",
                 "latency_batch=2", "image_size=24", "trial_id=disk", "device=cpu",
                 f"cache_dir={tmp_path / 'c'}", "--out", str(out)])
    assert code == 0
    row = pd.read_parquet(out / "trials" / "disk.parquet")
    assert row.status[0] == "ok" and row.dataset[0] == dataset


@pytest.mark.parametrize("dataset", ["tinyimagenet", "imagefolder"])
def test_wrong_or_corrupt_folders_fail_with_one_line(tmp_path, dataset):
    from tests.data_fixtures import corrupt_file, write_imagefolder, write_tinyimagenet

    root = tmp_path / "data"
    (root / "somewhere").mkdir(parents=True)
    result = run_cli("trial", "--set", f"dataset={dataset}", f"data_dir={root / 'somewhere'}",
                     f"out_dir={tmp_path / 'res'}", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "somewhere" in result.stderr and "Traceback" not in result.stderr

    if dataset == "tinyimagenet":
        write_tinyimagenet(root)
    else:
        write_imagefolder(root)
    # a training image (tiny-imagenet-200/test/ holds unlabelled images no trial reads)
    victim = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg")
                    and "train" in p.parts)[0]
    corrupt_file(victim)
    result = run_cli("trial", "--set", f"dataset={dataset}", f"data_dir={root}",
                     f"out_dir={tmp_path / 'res'}", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2, result.stderr
    assert victim.name in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "res").exists()

