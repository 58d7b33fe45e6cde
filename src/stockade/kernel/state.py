"""Stockade's memory per network namespace: /var/lib/stockade/<netns or "host">/ (the base is
STOCKADE_STATE_DIR when set). JSON files, each replaced atomically:
  previous   the part `rollback` restores (saved before an apply; kept while one is unconfirmed)
  applied    the part stockade last made live: version (digest), time, policy, backend
  confirmed  the part last confirmed (what `persist` writes)
  pending    the rollback timer: job id, deadline (wall clock, for people; CLOCK_MONOTONIC with the
             boot id, for the worker and for deciding if it is overdue), worker pid. Written *before*
             the kernel changes, so a timer exists for every new ruleset whatever fails after
  job        what the worker is asked to apply
  journal    an iptables transaction in progress (transaction.py)
  feeds/     per feed, its last good list and how its fetches went (feeds.py)
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import WriteError, remove, write_atomic
from .host import KernelError

DEFAULT_BASE = Path("/var/lib/stockade")
_NETNS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def boot_id() -> str:
    """This boot's id: CLOCK_MONOTONIC values and worker pids mean something only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def clock() -> float:
    """Seconds on CLOCK_BOOTTIME: monotonic (a changed wall clock moves no deadline), counts time
    suspended, shared by every process of this boot."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def check_netns(netns: str | None) -> None:
    """A namespace name is one path component of the state dir: no `..`, no `/`, and not `host`
    (the state dir of this machine's own namespace)."""
    if netns is not None and (not _NETNS.fullmatch(netns) or netns == "host" or ".." in netns):
        raise KernelError(f"invalid network namespace name {netns[:80]!r}: letters, digits, `_`, `.`, `-` "
                          "(not `host`, no `..`, at most 63)")


@dataclass(frozen=True)
class State:
    dir: Path

    @classmethod
    def for_netns(cls, netns: str | None, root: str | None = None, create: bool = True) -> State:
        """The namespace's state dir; under `root` (as `persist --root`), ROOT/var/lib/stockade/. A reader
        that never writes (logs) passes create=False: nothing is made."""
        check_netns(netns)
        base = Path(root) / DEFAULT_BASE.relative_to("/") if root else \
            Path(os.environ.get("STOCKADE_STATE_DIR") or DEFAULT_BASE)
        d = base / (netns or "host")
        if not create:
            return cls(d)
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise WriteError(d, f"cannot create the state directory: {e.strerror or e}") from None
        return cls(d)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def read(self, name: str) -> dict | None:
        try:
            return json.loads(self.path(name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # a torn file cannot happen (atomic replace); treat garbage as absent
            return None

    def write(self, name: str, data: dict) -> None:
        """Atomic and durable; WriteError when the disk refuses."""
        write_atomic(self.path(name), json.dumps(data, indent=1))

    def remove(self, name: str) -> None:
        remove(self.path(name))
