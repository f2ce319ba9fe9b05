"""A local sweep's Ray, seen from outside: every listening socket of every process the driver
started is on loopback, and its GCS refuses a client without the sweep's token.

The sweep itself is the first round of tests/search/test_faults.py (one Ray start less);
``check_loopback_and_token`` is called there while trials run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.search.helpers import group_processes, is_loopback, listening


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

    gcs = next(p for p in procs if p.name() == "gcs_server")
    environ = gcs.environ()
    assert environ.get("RAY_AUTH_MODE") == "token" and len(environ["RAY_AUTH_TOKEN"]) == 64
    port = next(port for pid, name, _, port in sockets if name == "gcs_server")
    ask = (f"from ray._raylet import GcsClient; c = GcsClient(address='127.0.0.1:{port}'); "
           "print('NODES', len(c.get_all_node_info(timeout=10)))")
    for token, allowed in (("0" * 64, False), (environ["RAY_AUTH_TOKEN"], True)):
        client = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        answer = subprocess.run([sys.executable, "-c", ask], env=client,
                                capture_output=True, text=True, timeout=120)
        assert ("NODES 1" in answer.stdout) is allowed, answer.stderr[-500:]
    return sockets
