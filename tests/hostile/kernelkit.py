"""Shared pieces of the hostile kernel tests of issue 14 (their fixtures are in conftest.py): a
private mount namespace holding a small tmpfs, in which `stockade` runs so that a full or
read-only disk is a real ENOSPC / EROFS, never a mock; running `stockade` there; worker pids."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

from tests.kernel.applylab import STOCKADE, env, full_text, policies  # noqa: F401 -- re-exported

HOLDER = r"""
import subprocess, sys, time
d, size = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "stk-hostile", d], check=True)
print("ready", flush=True)
sys.stdin.read()
"""


class SmallDisk:
    """A tmpfs of `size` mounted on `dir` in a private mount namespace, for as long as the context
    lasts; `run` executes a command inside that mount namespace (nsenter), so only it (and the
    workers it starts) see the tmpfs."""

    def __init__(self, dir: Path, size: str = "2m"):
        self.dir, self.size = Path(dir), size

    def __enter__(self) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", sys.executable, "-c", HOLDER,
                                        str(self.dir), self.size], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
        assert self.holder.stdout.readline().strip() == "ready"
        self.mnt = f"/proc/{self.holder.pid}/ns/mnt"
        return self

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--mount={self.mnt}", "--", *argv]

    def run(self, argv: list[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, check=check, **kw)

    def path(self, p: Path | str) -> Path:
        """`p` as seen inside the mount namespace (through /proc/PID/root), from this process."""
        return Path(f"/proc/{self.holder.pid}/root") / Path(p).relative_to("/")

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """(inode, size, mtime) of every file under the tmpfs, to notice the first change."""
        top = self.path(self.dir)
        out = {}
        for p in top.rglob("*"):
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if not p.name.startswith(".filler"):
                out[str(p)] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def readonly(self, on: bool = True) -> None:
        """Every new write fails (EROFS, as from a disk gone bad): a read-only bind mount over the
        tmpfs (a remount of the tmpfs itself is refused while a worker's log is open for writing)."""
        if on:
            self.run(["mount", "--bind", str(self.dir), str(self.dir)], check=True)
            self.run(["mount", "-o", "remount,bind,ro", str(self.dir)], check=True)
        else:
            self.run(["umount", str(self.dir)], check=True)

    def full_from(self, trigger):
        """A context in which the disk becomes full as soon as `trigger` (a path inside that exists, or
        a function that returns True) holds, and stays full (what a file removal frees is taken again at once), as a disk other writers fill."""
        return _Filler(self, trigger)

    def __exit__(self, *exc) -> None:
        self.holder.stdin.close()
        self.holder.wait(10)


class _Filler:
    def __init__(self, disk: SmallDisk, trigger: Path | None):
        self.disk, self.trigger, self.stop = disk, trigger, threading.Event()

    def _run(self) -> None:
        ready = self.trigger if callable(self.trigger) else lambda: self.disk.path(self.trigger).exists()
        while not self.stop.is_set() and self.trigger is not None and not ready():
            time.sleep(0.001)
        n = 0
        while not self.stop.is_set():
            for name in (f".filler{n}", f".filler{n + 1}"):
                st = os.statvfs(self.disk.path(self.disk.dir))
                if st.f_bavail:
                    fd = os.open(self.disk.path(self.disk.dir / name), os.O_WRONLY | os.O_CREAT, 0o600)
                    try:
                        os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize)
                    except OSError:
                        pass
                    finally:
                        os.close(fd)
            n += 2
            time.sleep(0.0005)

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        for p in self.disk.path(self.disk.dir).glob(".filler*"):
            p.unlink()


def stockade_in(disk: SmallDisk | None, args: list[str], state: Path, **extra: str) -> subprocess.CompletedProcess:
    argv = [STOCKADE, *args]
    return subprocess.run(disk.argv(argv) if disk else argv, capture_output=True, text=True, env=env(state, **extra),
                          check=False)


def status(ns: str, state: Path, disk: SmallDisk | None = None) -> tuple[int, dict]:
    p = stockade_in(disk, ["status", "--netns", ns, "--json"], state)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)


def worker_pids(ns) -> list[int]:
    """The rollback workers in `ns`; a process that exits while it is looked at is not one."""
    found = []
    for pid in ns.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"stockade.kernel.rollback" in cmdline:
            found.append(pid)
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(pred, timeout: float = 10.0, step: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False
