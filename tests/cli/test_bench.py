"""`hgsearch bench`'s command line refuses what it cannot do, at once and writing nothing."""

from __future__ import annotations

import pytest
import torch

from hgsearch.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")   # see harness.auto_threads


@pytest.mark.parametrize("args, message", [
    (["--only", "hgsr,bogus"], "--only bogus"),
    (["--threads", "0"], "--threads 0"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err and out.read_text() == "x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert main(["bench", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "device=cuda" in capsys.readouterr().err and not (tmp_path / "o").exists()
