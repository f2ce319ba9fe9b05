"""cluster/local_cluster.sh: its nodes listen on 127.0.0.1 only, with token authentication.

Measured from outside: the listening TCP sockets (psutil, which reads /proc/net/tcp and tcp6)
of every process in the nodes' sessions and of a driver, while a worker process runs on each
node. Ports are picked free, as other Ray clusters may run on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"

HOLDERS = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")

@ray.remote(num_cpus=1)
class Holder:
    def node(self):
        return ray.get_runtime_context().get_node_id()

# One worker process on each node, alive while the test looks at the sockets.
holders = [Holder.options(resources={n: 0.01}).remote() for n in ("head", "worker1")]
print("READY", *ray.get([h.node.remote() for h in holders]), flush=True)
sys.stdin.read()
"""
GCS_CHECK = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)
    print("CONNECTED")
except Exception as err:
    print("REFUSED", type(err).__name__)
"""
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
DASHBOARD_PORT = 8265   # Ray's default


def _free_port_block() -> int:
    """A GCS port P with P and the agents' ports (P+100.., see local_cluster.sh) free."""
    import random
    import socket

    for _ in range(50):
        port = random.randrange(20000, 40000)
        try:
            for p in (port, *range(port + 100, port + 104), *range(port + 110, port + 114)):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", p))
            return port
        except OSError:
            continue
    pytest.skip("no free block of ports for the local cluster")


def _listening(pids: set[int]) -> list[tuple[str, int, str, int]]:
    """(name, pid, address, port) of every listening TCP socket (IPv4 and IPv6) of ``pids``."""
    import psutil

    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out += [(proc.name(), pid, c.laddr.ip, c.laddr.port)
                    for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return out


def _is_dashboard(pid: int) -> bool:
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return any(part.endswith("dashboard/dashboard.py") for part in cmdline)


def _in_sessions(sessions: set[int]) -> set[int]:
    """Live processes in these sessions (a zombie has ended; init reaps it in its own time)."""
    import psutil

    found = set()
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions and proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def test_local_cluster_nodes_listen_on_loopback_only_with_token_auth(tmp_path):
    """cluster/local_cluster.sh: a head and a worker node, and a driver holding a worker
    process on each; every listening socket of every process they started is on loopback."""
    script = CLUSTER / "local_cluster.sh"
    port = _free_port_block()
    env = {**os.environ, "STATE": str(tmp_path / "state"), "PORT": str(port), "CPUS": "1",
           "PYTHON": sys.executable}
    env.pop("RAY_ADDRESS", None)
    started = subprocess.run(["bash", str(script), "start", "1"], env=env, capture_output=True,
                             text=True, timeout=400)
    sessions: set[int] = set()
    driver = None
    try:
        pids_file = tmp_path / "state" / "pids"
        if pids_file.exists():
            sessions = {int(line.split()[0]) for line in pids_file.read_text().splitlines()}
        assert started.returncode == 0, started.stdout + started.stderr
        exports = subprocess.run(["bash", str(script), "env"], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
        assert exports[0] == "export"
        settings = dict(item.split("=", 1) for item in exports[1:])
        assert settings["RAY_AUTH_MODE"] == "token"           # set explicitly, not by default
        assert len((tmp_path / "state" / "token").read_text().strip()) == 64
        # Token authentication is on: a client without the token is refused by the GCS.
        bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = subprocess.run([sys.executable, "-c", GCS_CHECK, f"127.0.0.1:{port}"],
                                 env=bare, capture_output=True, text=True, timeout=120)
        assert refused.stdout.split() == ["REFUSED", "AuthenticationError"], refused.stdout
        # The nodes alone: the GCS, two raylets, their agents.
        sockets = _listening(_in_sessions(sessions))
        names = [name for name, *_ in sockets]
        assert "gcs_server" in names and names.count("raylet") >= 2, sockets
        assert [s for s in sockets if s[2] not in LOOPBACK] == []
        # With a driver holding a worker process on each node: the workers' servers too.
        driver = subprocess.Popen([sys.executable, "-c", HOLDERS, f"127.0.0.1:{port}"],
                                  env={**env, **settings}, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        ready = driver.stdout.readline().split()
        assert ready[:1] == ["READY"] and len(set(ready[1:])) == 2     # one on each node
        sockets = _listening(_in_sessions(sessions) | {driver.pid})
        names = [name for name, *_ in sockets]
        assert sum(name.startswith("ray::Holder") for name in names) == 2, sockets
        assert driver.pid in {pid for _, pid, *_ in sockets}
        assert [s for s in sockets if s[2] not in LOOPBACK] == []
        # --include-dashboard=false: nothing serves the dashboard, on loopback or elsewhere
        # (Ray still runs dashboard.py, minimal, for its own use).
        dashboard = {pid for pid in _in_sessions(sessions) if _is_dashboard(pid)}
        assert [s for s in sockets if s[1] in dashboard or s[3] == DASHBOARD_PORT] == []
    finally:
        if driver is not None:
            driver.stdin.close()
            driver.wait(timeout=60)
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=120)
    assert sessions and _in_sessions(sessions) == set()      # and nothing of ours is left
