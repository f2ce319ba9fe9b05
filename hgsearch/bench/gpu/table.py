"""The GPU suite's short table: a few lines per part, every figure of them from the JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _training(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    return [f"batch {b}: fp32 {f[f'b{b}_fp32_images_per_s']:,.0f} img/s; bf16+channels_last "
            f"{f[f'b{b}_bf16_cl_images_per_s']:,.0f} (x{f[f'b{b}_bf16_cl_speedup']:.2f}); "
            f"+compile {f[f'b{b}_bf16_cl_compile_images_per_s']:,.0f} "
            f"(x{f[f'b{b}_compile_speedup']:.2f}, compile {f[f'b{b}_compile_s']:.1f} s)"
            for b in s["batches"]]


def _sharing(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    lines = []
    for n in s["counts"]:
        vs = f.get(f"n{n}_vs_n1")
        lines.append(f"{n} trial(s): {f[f'n{n}_images_per_s']:,.0f} img/s together"
                     + (f" (x{vs:.2f} of one)" if vs is not None else "")
                     + f", {f[f'n{n}_images_per_s_per_trial']:,.0f} each; peak "
                     f"{f[f'n{n}_peak_mib_max']:,.0f} MiB, device "
                     f"{f[f'n{n}_device_mib_per_trial']:,.0f} MiB per trial")
    return lines


def _data(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    return [f"batch {b}: DeviceData {f[f'b{b}_data_share_of_step']:.2%} of a step "
            f"({1e3 * f[f'b{b}_device_batch_s']:.3g} ms vs {1e3 * f[f'b{b}_step_s']:.3g} ms); "
            f"DataLoader {f[f'b{b}_loader_share_of_step']:.2%}" for b in s["batches"]]


def _scoring(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    lines = [f"fast x{f['speedup']:.2f} faster than reference ({f['reference_s']:.3g} s / "
             f"{f['fast_s']:.3g} s, {s['samples']} samples, {s['filters']} filters, TF32 off); "
             f"deltas apart {f['max_diff_rel_to_max_delta']:.2g} of the largest"]
    for t in ("tf32_off", "tf32_on"):
        lines.append(f"{t.replace('_', ' ')} vs float64 on CPU ({len(s['cpu64_filters'])} "
                     f"filters): {f[f'{t}_max_diff_rel_to_max_delta_vs_cpu64']:.2g} of the "
                     f"largest delta; the smallest deltas (<= "
                     f"{f['low_delta_max_abs_cpu64']:.2g}) off by up to "
                     f"{f[f'{t}_low_delta_max_abs_diff_vs_cpu64']:.2g}")
    return lines


def _pruning(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    return [f"batch {b}: dense {f[f'latency_dense_b{b}_ms']:.3g} ms; 50% pruned "
            + ", ".join(f"round_to {r} x{f[f'speedup_round{r}_b{b}']:.2f}"
                        for r in s["round_to"]) for b in s["batches"]]


def _sweep(f: dict[str, float], s: dict[str, Any]) -> list[str]:
    return [f"{f['trials']:.0f} trials, at most {f['max_concurrent_seen']:.0f} at once "
            f"({f['all_at_once_s']:.1f} s all together); sweep {f['sweep_s']:.1f} s, a trial "
            f"{f['trial_seconds_median']:.1f} s (median)"]


LINES: dict[str, Callable[[dict[str, float], dict[str, Any]], list[str]]] = {
    "training": _training, "sharing": _sharing, "data": _data, "scoring": _scoring,
    "pruning": _pruning, "sweep": _sweep}


def format_gpu_table(report: dict[str, Any]) -> list[str]:
    """``part  what it measured`` lines; a part that did not run says why; checks as yes/NO."""
    m = report["machine"]
    rows = [("gpu suite", f"{report['size']} size on {report['device']} "
                          f"({m.get('gpu') or m.get('cpu_model')})")]
    for name, part in report["parts"].items():
        if part["status"] != "ok":
            rows.append((name, part["status"]))
            continue
        for line in LINES[name](part["figures"], part["settings"]):
            rows.append((name, line))
        for key, ok in part.get("checks", {}).items():
            rows.append((name, f"check {key}: {'yes' if ok else 'NO'}"))
    width = max(len(name) for name, _ in rows)
    return [f"{name.ljust(width)}  {text}" for name, text in rows]
