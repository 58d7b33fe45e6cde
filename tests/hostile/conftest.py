"""Hostile input (issue 14): each test feeds stockade what an attacker or an unlucky admin could,
and asserts what must hold instead. Kernel parts run in throwaway namespaces (the kernel suite's
fixtures, marked `kernel`), file-system faults in a private mount namespace with a small tmpfs."""
from __future__ import annotations

import re
import subprocess
import sys

from hypothesis import settings

from ..kernel.conftest import kernel_ok, netns, no_namespace_left  # noqa: F401 (fixtures)

settings.register_profile("thorough", max_examples=10_000)  # --hypothesis-profile=thorough: the fuzz's full run

# `file:line:col: error: ...`, the form every error of bad input takes
POSITIONED = re.compile(r"^\S.*?:\d+:\d+: error: ", re.M)


def stockade(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command line, as a separate process (exit codes and stderr as an admin sees them)."""
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def refused(r: subprocess.CompletedProcess, code: int = 1) -> str:
    """The output (stdout and stderr) of a run that must fail with `code` and a positioned error, never
    a traceback."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == code, (r.returncode, out)
    assert POSITIONED.search(out), out
    return out
