"""What the sweep tests share: small spaces, a driver in its own process group, and the
processes and sockets of such a group, seen from outside (psutil)."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from tests.search.fakes import LAMS

REPO = Path(__file__).resolve().parents[2]
FAKE = "tests.search.fakes:fake_run_trial"


def fake_space(path: Path, **changes) -> Path:
    """A space whose trials are fake_run_trial: the searched lam says how each ends."""
    data = {"fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 1},
            "search": {"lam": {"choice": list(LAMS)}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": 4, "max_concurrent": 2,
            "resources": {"cpu": 1}, "retries": 0, "baseline": True, **changes}
    path.write_text(yaml.safe_dump(data))
    return path


def driver_env(**extra: str) -> dict[str, str]:
    """The environment of a driver whose Ray workers can import tests.search.fakes."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def start_driver(args: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``hgsearch sweep ARGS`` (tests/search/driver_main.py) in a new session: the driver and
    every process it starts (Ray's included) share one process group, ended by its id only."""
    command = [sys.executable, "-m", "tests.search.driver_main"]
    return subprocess.Popen([*command, "sweep", *args], cwd=REPO, env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def group_processes(pgid: int) -> list[psutil.Process]:
    """Every live process of process group ``pgid`` (ours: the group a driver started)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def kill_group(pgid: int, *, wait_s: float = 10.0) -> None:
    """SIGKILL process group ``pgid`` and wait until none of it is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while group_processes(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def listening(procs: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    """(pid, name, address, port) of every listening TCP socket of ``procs``."""
    out = []
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return out


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def wait_for(predicate, *, timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited {proc.returncode}: "
                                 + (log.read_text()[-3000:] if log else ""))
        if time.monotonic() > deadline:
            raise AssertionError("timed out" + (": " + log.read_text()[-3000:] if log else ""))
        time.sleep(step)
