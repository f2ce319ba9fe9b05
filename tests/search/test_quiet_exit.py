"""A Ray worker told to exit (SIGTERM) inside a garbage-collector callback exits at once and
quietly: Python would print the SystemExit as "Exception ignored" and carry on."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A weakref callback that raises SystemExit, as Ray's SIGTERM handler does when the signal
# lands while the collector runs one; then a line that must not be reached.
CHILD = """
import sys, weakref
{install}
class Thing: pass
thing = Thing()
ref = weakref.ref(thing, lambda _: sys.exit(3))
del thing
print("carried on")
"""


@pytest.mark.parametrize("installed", [True, False])
def test_systemexit_in_a_gc_callback_exits_quietly(installed):
    install = ("from hgsearch.search.worker import quiet_exit_on_sigterm\n"
               "quiet_exit_on_sigterm(); quiet_exit_on_sigterm()") if installed else ""
    proc = subprocess.run([sys.executable, "-c", CHILD.format(install=install)],
                          capture_output=True, text=True, timeout=120)
    if installed:
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "", "")
    else:     # the control: what Python does by itself
        assert proc.returncode == 0 and "carried on" in proc.stdout
        assert "Exception ignored" in proc.stderr and "SystemExit" in proc.stderr


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    child = CHILD.format(install="from hgsearch.search.worker import quiet_exit_on_sigterm\n"
                                 "quiet_exit_on_sigterm()").replace("sys.exit(3)", "1 / 0")
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "carried on" in proc.stdout
    assert "ZeroDivisionError" in proc.stderr
