"""The detached worker: it makes the new part live, arms the rollback timer, and restores the
saved part unless `stockade confirm` arrives in time.

`apply` starts it in a new session (setsid: no controlling terminal, so no SIGHUP when the SSH
session closes; not a child of the shell, so killing the shell's process group misses it),
inside the target namespace, and hands it the held lock. Everything it needs is on disk in the
state dir (job, previous, pending), so it depends on nothing of the process that started it:
killing `apply` at any moment after the start leaves the worker to finish the transaction and
keep the timer.
Run as: python -m stockade.kernel.rollback STATE_DIR JOB_ID LOCK_FD REPORT_FD
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .host import Host
from .live import read_part
from .lock import locked
from .part import OwnedPart
from .state import State, now
from .transaction import apply, recover

POLL = 0.05  # seconds between looks at pending.json


def spawn(netns: str | None, state: State, job_id: str, lock_fd: int) -> dict:
    """Start the worker and wait for its report: {"ok": true, ...} once the new part is live and the
    timer armed, or {"ok": false, "error": ...}."""
    r, w = os.pipe()
    argv = [sys.executable, "-m", "stockade.kernel.rollback", str(state.dir), job_id, str(lock_fd), str(w)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    with open(state.dir / "worker.log", "a") as log:
        subprocess.Popen(argv, start_new_session=True, pass_fds=(lock_fd, w), stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, cwd="/")
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        return {"ok": False, "error": "the apply worker died before reporting; see " + str(state.dir / "worker.log")}


def restore_previous(host: Host, state: State, reason: str) -> OwnedPart:
    """Make the saved previous part live again (caller holds the lock); record it as applied."""
    recover(host, state)
    saved = state.read("previous")
    prev = OwnedPart.from_json(saved["part"])
    apply(host, read_part(host, prev.backend), prev, state)
    live = read_part(host, prev.backend)
    before = saved.get("applied") or {}  # what stockade had applied when the part was saved
    state.write("applied", {**before, "version": live.digest, "at": now(), "backend": live.backend,
                            "part": live.to_json(), "rolled_back": reason, "policy": before.get("policy")})
    state.remove("pending")
    return live


def _work(state: State, job_id: str, lock_fd: int, report_fd: int) -> float | None:
    """The transaction and arming; returns the deadline (None: nothing to wait for)."""
    host = Host(None)  # already inside the namespace
    job = state.read("job")
    report: dict = {"ok": False, "error": "job vanished"}
    deadline = None
    try:
        if job and job["id"] == job_id:
            recover(host, state)
            target = OwnedPart.from_json(job["target"])
            apply(host, read_part(host, target.backend), target, state)
            live = read_part(host, target.backend)
            record = {"version": live.digest, "at": now(), "policy": job["policy"], "backend": live.backend,
                      "part": live.to_json(), "policy_text": job.get("policy_text")}
            state.write("applied", record)
            if job["timeout"] > 0:
                deadline = time.time() + job["timeout"]
                state.write("pending", {"id": job_id, "deadline": deadline, "armed_at": now(), "pid": os.getpid()})
            else:
                state.write("confirmed", record)
                state.remove("pending")
            report = {"ok": True, "version": live.digest, "deadline": deadline, "worker": os.getpid()}
    except Exception as e:  # noqa: BLE001 -- reported to `apply`, which prints it; the part is unchanged
        report = {"ok": False, "error": str(e)}
    finally:
        os.close(lock_fd)
        try:
            with os.fdopen(report_fd, "w") as f:
                f.write(json.dumps(report))
        except OSError:  # `apply` is gone (killed): the timer does not need it
            pass
    return deadline


def _wait_and_rollback(state: State, job_id: str) -> None:
    while True:
        p = state.read("pending")
        if not p or p["id"] != job_id:
            return  # confirmed, rolled back by hand, or superseded by a newer apply
        if time.time() >= p["deadline"]:
            break
        time.sleep(min(POLL, max(0.0, p["deadline"] - time.time())))
    with locked(state.dir / "lock", timeout=600):
        p = state.read("pending")
        if p and p["id"] == job_id:
            restore_previous(Host(None), state, "not confirmed in time")
            print(f"{now()} rolled back job {job_id}: not confirmed in time", flush=True)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    state_dir, job_id, lock_fd, report_fd = argv
    state = State(Path(state_dir))
    if _work(state, job_id, int(lock_fd), int(report_fd)) is not None:
        _wait_and_rollback(state, job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
