"""SIGTERM and SIGHUP leave no namespace behind, and leftovers of a killed stockade are reaped
(issue 14, low): a lab killed by its session or by `kill` deletes what it made; what a SIGKILL left
is deleted by the next stockade that makes a namespace."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from stockade.kernel.netns import PREFIX, Netns, namespaces, remove

pytestmark = pytest.mark.kernel

POLICY = 'admin = ["ops"]\n[groups]\nops = ["192.0.2.7"]\n[[allow]]\nservice = "https"\n'


def _lab(tmp_path) -> subprocess.Popen:
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY)
    return subprocess.Popen([sys.executable, "-m", "stockade.cli", "lab", str(policy), "--family", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_namespaces(prefix: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = namespaces(prefix)
        if len(found) >= 2:  # the lab's topology is up (or coming up)
            return found
        time.sleep(0.05)
    raise AssertionError(f"the lab made no namespaces named {prefix}* within {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_lab_deletes_its_namespaces(kernel_ok, tmp_path, sig):
    proc = _lab(tmp_path)
    prefix = f"{PREFIX}{proc.pid}-"
    try:
        _wait_for_namespaces(prefix)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, (proc.returncode, err)
        assert "Traceback" not in err, err
        assert namespaces(prefix) == [], f"left behind after {sig.name}: {namespaces(prefix)}"
    finally:
        proc.kill()
        proc.wait()
        for name in namespaces(prefix):
            remove(name)


def test_namespaces_of_a_killed_stockade_are_reaped(kernel_ok):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now: what it "made" is a leftover
    stale = f"{PREFIX}{dead.pid}-abc123"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        Netns._reaped = False  # this process reaps on its next namespace, as a new stockade would
        with Netns():
            pass
        assert stale not in namespaces(), "a dead process's namespace was not reaped"
    finally:
        remove(stale)
