"""Running the ``hgsearch`` command as a user does: a fresh interpreter, its output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, module: str = "hgsearch.cli",
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS...``: what the installed ``hgsearch`` entry point runs."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)
