"""A uniquely named network namespace that lives exactly as long as a `with` block.

Everything stockade does to a kernel in tests happens inside one of these, never
in the machine's own namespace. Names start with "sk-" and carry the creating
process id, so leftovers can be told apart from other tools' namespaces.
Programs are run as argument lists (`ip netns exec NAME argv...`), never through
a shell, so no word of a rule can become a command.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from ..model.diagnostics import StockadeError

NETNS_DIR = Path("/run/netns")
PREFIX = "sk-"
IP = "ip"


class NetnsError(StockadeError, RuntimeError):
    """A command in (or about) a namespace failed; carries what it printed."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str):
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip() or stdout.strip()}")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwound like ^C, so every namespace's cleanup runs (Netns.close)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def unwind_on_termination() -> None:
    """Make SIGTERM and SIGHUP unwind the stack (as ^C does) instead of killing the process where it
    stands, which would leave its namespaces and their veths behind."""
    def handler(signum, _frame):
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def reap() -> list[str]:
    """Delete the namespaces of stockade processes that are gone (killed before their cleanup ran);
    the names carry the creating process id. Returns what was deleted."""
    gone = []
    for name in namespaces():
        pid = name[len(PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            remove(name)
            gone.append(name)
        except PermissionError:
            pass  # alive, another user's
    return gone


def process_prefix() -> str:
    """The name prefix of every namespace this process creates."""
    return f"{PREFIX}{os.getpid()}-"


def namespaces(prefix: str = PREFIX) -> list[str]:
    """Named namespaces whose name starts with `prefix`."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _run(argv: Sequence[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise NetnsError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


class Closing:
    """A resource with close(): leaving its `with` block closes it, and so does a failure while opening."""

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def opening(self):
        try:
            yield
        except BaseException:
            self.close()
            raise


class Netns(Closing):
    """`with Netns() as ns: ns.run([...])`: the namespace is gone when the block ends.

    Cleanup (killing whatever still runs inside, then deleting the namespace) runs
    on every exit path, KeyboardInterrupt included; an interrupt arriving during
    cleanup is held back until cleanup has finished.
    """

    def __init__(self, lo_up: bool = True):
        self.name = f"{process_prefix()}{secrets.token_hex(3)}"
        self.lo_up = lo_up
        self._created = False
        self._added = False  # `ip netns add` returned: no process of ours may still be making it

    _reaped = False  # once per process: leftovers of killed stockade processes go first

    def __enter__(self) -> Self:
        if not Netns._reaped:
            Netns._reaped = True
            reap()
        self._created = True  # before `add`: an interrupt during it must still clean up
        _OPEN[self.name] = self
        with self.opening():
            _run([IP, "netns", "add", self.name])
            self._added = True
            if self.lo_up:
                self.run([IP, "link", "set", "lo", "up"])
        return self

    def argv(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside the namespace."""
        if isinstance(argv, str) or not argv or any(not isinstance(a, str) for a in argv):
            raise TypeError("argv must be a non-empty list of strings (no shell command lines)")
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a program inside the namespace and wait; raise NetnsError on failure if `check`."""
        if not self._created:
            raise NetnsError(argv, -1, "", f"namespace {self.name} is not open")
        return _run(self.argv(argv), input, check)

    def spawn(self, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
        """Start a program inside the namespace without waiting; it is killed at cleanup."""
        if not self._created:
            raise NetnsError(argv, -1, "", f"namespace {self.name} is not open")
        return subprocess.Popen(self.argv(argv), **popen_kwargs)

    def pids(self) -> list[int]:
        return pids(self.name)

    def link_mac(self, ifname: str) -> str:
        return self.run(["cat", f"/sys/class/net/{ifname}/address"]).stdout.strip()

    def wait_up(self, ifname: str, deadline: float) -> None:
        """Carrier comes up asynchronously (linkwatch): wait, so a first packet is not lost."""
        while self.run(["cat", f"/sys/class/net/{ifname}/operstate"]).stdout.strip() != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ifname} in {self.name} did not come up")
            time.sleep(0.02)

    def close(self) -> None:
        """Kill what runs inside and delete the namespace; safe to call more than once."""
        interrupt: BaseException | None = None
        while self._created:
            try:
                if not self._added:
                    _wait_for_add(self.name)
                remove(self.name)
                self._created = False
                _OPEN.pop(self.name, None)
            except KeyboardInterrupt as e:  # finish cleaning up first, then let it through
                interrupt = e
        if interrupt is not None:
            raise interrupt


# Every namespace this process made and has not deleted: a signal that lands after a Netns is made but
# before the `with` (or ExitStack) that would close it has taken it leaves it to close_all.
_OPEN: dict[str, Netns] = {}


def close_all() -> None:
    """Delete every namespace of this process still open, newest first (the process is ending: an
    interrupt meanwhile is held back until all are gone, then dropped)."""
    for ns in reversed(list(_OPEN.values())):
        while True:
            try:
                ns.close()
                break
            except KeyboardInterrupt:
                continue
            except NetnsError:
                break  # `ip` refused: the next stockade to make a namespace reaps it (reap)


def _wait_for_add(name: str, timeout: float = 10) -> None:
    """Wait until no `ip netns add NAME` runs. A signal that lands while subprocess starts it (after the
    fork, before Popen is made) leaves the child running unseen, and it makes the namespace after a
    cleanup that found none."""
    argv = f"{IP}\0netns\0add\0{name}\0".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for proc in Path("/proc").iterdir():
            try:
                running = proc.name.isdigit() and (proc / "cmdline").read_bytes() == argv
            except OSError:
                continue
            if running:
                break
        if not running:
            return
        time.sleep(0.01)


def pids(name: str) -> list[int]:
    """Processes running inside the named namespace."""
    proc = _run([IP, "netns", "pids", name], check=False)
    return [int(w) for w in proc.stdout.split() if w.isdigit()]


def remove(name: str) -> None:
    """Kill every process inside the named namespace, then delete it (no-op if it is gone)."""
    if not (NETNS_DIR / name).exists():
        return
    for pid in pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc = _run([IP, "netns", "del", name], check=False)
    if proc.returncode != 0 and (NETNS_DIR / name).exists():
        raise NetnsError([IP, "netns", "del", name], proc.returncode, proc.stdout, proc.stderr)


def unavailable(probes: Sequence[Sequence[str]] = ()) -> str | None:
    """Why throwaway namespaces cannot be used here (None if they can).

    Each probe is a command that must succeed inside a fresh namespace, e.g.
    `["iptables-save"]`, so a missing tool or kernel support is found up front.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [t for t in [IP, *(p[0] for p in probes)] if shutil.which(t) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    try:
        with Netns() as ns:
            for probe in probes:
                proc = ns.run(probe, check=False)
                if proc.returncode != 0:
                    return f"`{' '.join(probe)}` fails in a namespace: {proc.stderr.strip()[:300]}"
    except (NetnsError, OSError) as e:
        return f"cannot create a network namespace: {e}"
    return None
