"""Where a trial computes: the precision and memory-format keys resolved against the machine, and
the warning for bf16 that a CPU only emulates."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

import hgsearch.runtime as runtime
from hgsearch.errors import UserError
from hgsearch.runtime import emulated_bf16_warning, resolve_runtime
from hgsearch.trial import run_trial


def _cpu_flags() -> set[str] | None:
    """The kernel's view of this CPU's features (an outsider's: not PyTorch's CPUID reading)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file() or platform.machine() not in ("x86_64", "AMD64"):
        return None
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_native_bf16_is_what_the_kernel_reports():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("needs an x86 Linux /proc/cpuinfo")
    assert runtime.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_tile"})


@pytest.mark.parametrize("native, precision, channels_last, expected", [
    (False, "auto", "auto", "fp32"), (True, "auto", "auto", "fp32"),
    (False, "fp32", "auto", "fp32"), (True, "fp32", "on", "fp32+nhwc"),
    (False, "bf16", "auto", "bf16+nhwc"), (True, "bf16", "off", "bf16"),
    (False, "bf16_if_native", "auto", "fp32"), (True, "bf16_if_native", "auto", "bf16+nhwc"),
    (True, "bf16_if_native", "off", "bf16"), (False, "bf16_if_native", "on", "fp32+nhwc"),
])
def test_cpu_precision_and_layout(monkeypatch, native, precision, channels_last, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    resolved = resolve_runtime("cpu", precision, channels_last)
    assert resolved.numerics == expected
    assert (resolved.autocast_dtype == torch.bfloat16) == expected.startswith("bf16")
    warned = emulated_bf16_warning(resolved) is not None
    assert warned == (expected.startswith("bf16") and not native)


@pytest.mark.parametrize("precision", ["auto", "bf16_if_native"])
def test_cuda_takes_bf16_and_nhwc_whatever_the_cpu(monkeypatch, precision):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    resolved = resolve_runtime("cuda", precision)
    assert resolved.numerics == "bf16+nhwc" and emulated_bf16_warning(resolved) is None


@pytest.mark.parametrize("native", [False, True])
def test_a_trial_logs_the_warning_before_its_data_is_read(tmp_path, monkeypatch, native):
    # An empty cifar10 folder fails when the data is read, after the runtime is resolved: the
    # warning must come first, and nothing is trained.
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    (tmp_path / "empty").mkdir()
    lines: list[str] = []
    with pytest.raises(UserError):
        run_trial({"dataset": "cifar10", "data_dir": str(tmp_path / "empty"), "device": "cpu",
                   "precision": "bf16", "out_dir": str(tmp_path / "out")}, log=lines.append)
    assert any("bf16 is emulated" in line for line in lines) == (not native)
