"""Trial files from nodes that share no disk with the driver: a file sink actor.

The sink runs on the driver's node and writes into the sweep folder what trials on other
machines send it (row, model, curve, log), atomically; results from every node end up in one
folder without a shared filesystem. A trial sends its row before it reports its end, so the
row is in the folder when the driver hears of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from hgsearch.fileio import write_bytes_atomic
from hgsearch.results_layout import ResultsFolder

SINK_NAMESPACE = "hgsearch"        # Ray namespace of the sweeps' file sinks


@ray.remote(num_cpus=0)
class FileSink:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder).resolve()

    def put(self, name: str, data: bytes) -> None:
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder):
            raise ValueError(f"{name}: not a path inside the sweep folder")
        write_bytes_atomic(path, data)


def start_sink(folder: Path) -> Any:
    """The sweep's file sink, pinned to the driver's node; trials find it by its name."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return FileSink.options(name=sink_name(folder), namespace=SINK_NAMESPACE,
                            scheduling_strategy=here).remote(str(folder))


def sink_name(folder: Path | str) -> str:
    return f"hgsearch-files:{Path(folder).resolve()}"


def send_files(folder: Path | str, trial_id: str, *, row: bool = False) -> list[str]:
    """Send a trial's model, curve and log (and with ``row`` its row) to the sweep's sink.

    Returns the names sent; none when the sweep has no sink (every node shares its disk).
    Whole files, once per trial: a compact model is megabytes at most.
    """
    try:
        sink = ray.get_actor(sink_name(folder), namespace=SINK_NAMESPACE)
    except ValueError:
        return []
    layout = ResultsFolder(folder)
    sent = []
    for path in layout.trial_files(trial_id) + ([layout.row(trial_id)] if row else []):
        if path.is_file():
            name = path.relative_to(layout.root).as_posix()
            ray.get(sink.put.remote(name, path.read_bytes()))
            sent.append(name)
    return sent


def status_sender(folder: Path | str) -> Callable[[str, bytes], None] | None:
    """What sends a running trial's status file to the sweep's sink as it changes (without
    waiting: a trial's calls reach the sink in order, before its row); None without a sink."""
    try:
        sink = ray.get_actor(sink_name(folder), namespace=SINK_NAMESPACE)
    except ValueError:
        return None
    return lambda name, data: sink.put.remote(name, data)
