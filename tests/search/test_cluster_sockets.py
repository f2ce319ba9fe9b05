"""A local sweep's Ray, seen from outside: every listening socket of every process the driver
started is on loopback, none of them is the dashboard's, and its GCS refuses a client without
the sweep's token.

``check_loopback_and_token`` runs here on a sweep's Ray alone (ray_session, as run_sweep opens
it) and in the first round of tests/search/test_faults.py while trials run.
"""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from tests.search.helpers import (
    REPO,
    driver_env,
    group_processes,
    is_loopback,
    kill_group,
    listening,
)

DASHBOARD_PORT = 8265   # Ray's default; `ray start --dashboard-port` moves it


@pytest.mark.parametrize("address,expected", [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", False),
    ("::", False), ("192.0.2.2", False), ("::ffff:192.0.2.2", False)])
def test_loopback_check_itself(address, expected):
    assert is_loopback(address) is expected


def check_loopback_and_token(pgid: int, env: dict[str, str]) -> list[tuple]:
    """Assert on the running sweep of process group ``pgid``; returns the sockets seen."""
    procs = group_processes(pgid)
    sockets = listening(procs)
    names = {name for _, name, _, _ in sockets}
    # Ray itself must be among what we looked at, or the test proves nothing.
    assert {"gcs_server", "raylet"} <= names and pgid in {p for p, *_ in sockets}, sockets
    assert len({pid for pid, *_ in sockets}) >= 4, sockets     # + workers and an agent
    wide = [s for s in sockets if not is_loopback(s[2])]
    assert not wide, f"listening beyond loopback: {wide}"
    # Off unless asked: Ray still starts dashboard.py (minimal, for its own use) but it serves
    # nothing; include_dashboard=True has it listen on 8265, on loopback, which the line above
    # lets through.
    dashboard = {p.pid for p in procs if _is_dashboard(p)}
    served = [s for s in sockets if s[0] in dashboard or s[3] == DASHBOARD_PORT]
    assert not served, f"the dashboard is listening: {served}"

    gcs = next(p for p in procs if p.name() == "gcs_server")
    environ = gcs.environ()
    assert environ.get("RAY_AUTH_MODE") == "token" and len(environ["RAY_AUTH_TOKEN"]) == 64
    port = next(port for pid, name, _, port in sockets if name == "gcs_server")
    ask = (f"from ray._raylet import GcsClient; c = GcsClient(address='127.0.0.1:{port}'); "
           "print('NODES', len(c.get_all_node_info(timeout=10)))")
    clients = {allowed: subprocess.Popen(   # both at once: each spends seconds importing ray
        [sys.executable, "-c", ask], env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for token, allowed in (("0" * 64, False), (environ["RAY_AUTH_TOKEN"], True))}
    for allowed, client in clients.items():
        out, err = client.communicate(timeout=120)
        assert ("NODES 1" in out) is allowed, err[-500:]
    return sockets


def _is_dashboard(proc: psutil.Process) -> bool:
    try:
        return any(part.endswith("dashboard/dashboard.py") for part in proc.cmdline())
    except psutil.Error:
        return False


SESSION = """
import sys
from hgsearch.search.cluster import ray_session
with ray_session(None, num_cpus=1):
    print("UP", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.timeout(180)   # about 15 s: one Ray start and two clients
def test_a_sweeps_own_ray_listens_on_loopback_only_without_dashboard_and_wants_its_token():
    env = driver_env()
    proc = subprocess.Popen([sys.executable, "-c", SESSION], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "UP", proc.poll()
        check_loopback_and_token(proc.pid, env)
        proc.stdin.close()                # ray_session shuts its Ray down on leaving
        assert proc.wait(timeout=60) == 0
    finally:
        kill_group(proc.pid)
