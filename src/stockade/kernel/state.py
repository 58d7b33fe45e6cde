"""Stockade's memory per network namespace: /var/lib/stockade/<netns or "host">/ (the base is
STOCKADE_STATE_DIR when set). JSON files, each replaced atomically:
  previous   the part `rollback` restores (saved before an apply; kept while one is unconfirmed)
  applied    the part stockade last made live: version (digest), time, policy, backend
  confirmed  the part last confirmed (what `persist` writes)
  pending    the armed rollback timer: job id, deadline, worker pid
  job        what the worker is asked to apply
  journal    an iptables transaction in progress (transaction.py)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE = Path("/var/lib/stockade")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class State:
    dir: Path

    @classmethod
    def for_netns(cls, netns: str | None) -> State:
        base = Path(os.environ.get("STOCKADE_STATE_DIR") or DEFAULT_BASE)
        d = base / (netns or "host")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        p = self.path(name)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(p)

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
