"""The detached worker: it makes the new part live, arms the rollback timer, and restores the
saved part unless `stockade confirm` arrives in time.

`apply` starts it in a new session (setsid: no controlling terminal, so no SIGHUP when the SSH
session closes; not a child of the shell, so killing the shell's process group misses it),
inside the target namespace, and hands it the held lock. Everything it needs is on disk in the
state dir (job, previous, pending), so it depends on nothing of the process that started it:
killing `apply` at any moment after the start leaves the worker to finish the transaction and
keep the timer. The timer is armed (pending.json written) *before* the kernel changes; if
anything fails after the change, the worker rolls back at once, and if even that fails it keeps
waiting and tries again at the deadline: there is never a new ruleset without a timer.
Where systemd runs, the worker lives in its own transient scope (`systemd-run --scope`), so
stopping the SSH session's scope does not stop it; elsewhere, on a pure cgroup2 host, in its own
cgroup `stockade-rollback`; always in its own session and process group.
A timer whose worker is gone (killed, or a reboot: the boot id changed) is reported by every
command as an alarm (`timer_alarm`); `stockade repair` resolves it.
Run as: python -m stockade.kernel.rollback STATE_DIR JOB_ID LOCK_FD REPORT_FD
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..child import CWD, python_module
from ..files import WriteError
from .host import Host, KernelError
from .live import read_part
from .lock import locked
from .part import OwnedPart
from .state import State, boot_id, clock, now
from .transaction import apply, nft_shape, recover

POLL = 0.05  # seconds between looks at pending.json


def _detach_argv(argv: list[str], job_id: str) -> list[str]:
    """The worker's command line: in a transient systemd scope where systemd runs."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemd-run"):
        return ["systemd-run", "--scope", "--quiet", "--collect", f"--unit=stockade-rollback-{job_id}", *argv]
    return argv


def _own_cgroup() -> None:
    """On a pure cgroup2 host without systemd: leave the caller's cgroup (runs in the worker)."""
    root = Path("/sys/fs/cgroup")
    if Path("/run/systemd/system").is_dir() or not (root / "cgroup.procs").exists():
        return
    try:
        (root / "stockade-rollback").mkdir(exist_ok=True)
        (root / "stockade-rollback" / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        pass  # not permitted here (a container): the own session and process group remain


def spawn(netns: str | None, state: State, job_id: str, lock_fd: int) -> dict:
    """Start the worker and wait for its report: {"ok": true, ...} once the new part is live and the
    timer armed, or {"ok": false, "error": ..., "live": digest}."""
    r, w = os.pipe()
    argv = python_module("stockade.kernel.rollback", str(state.dir), job_id, str(lock_fd), str(w))
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        with open(state.dir / "worker.log", "a") as log:
            subprocess.Popen(_detach_argv(argv, job_id), start_new_session=True, pass_fds=(lock_fd, w),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=CWD)
    except OSError as e:
        os.close(r)
        os.close(w)
        raise KernelError(f"cannot start the apply worker: {e.strerror or e}; nothing was changed") from None
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        return {"ok": False, "error": "the apply worker died before reporting; see " + str(state.dir / "worker.log")}


def worker_alive(pending: dict) -> bool:
    """Is the worker that owns this timer still running (same boot, its pid running this job)?"""
    if pending.get("boot") != boot_id():
        return False
    try:
        cmdline = Path(f"/proc/{int(pending['pid'])}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return b"stockade.kernel.rollback" in cmdline and pending["id"].encode() in cmdline


def seconds_left(pending: dict) -> float | None:
    if pending.get("boot") != boot_id() or pending.get("clock_deadline") is None:
        return None
    return pending["clock_deadline"] - clock()


def confirmed(state: State, pending: dict) -> bool:
    """Was this timer's apply confirmed? (confirmed.json is the commit point of `confirm`; pending.json
    may outlive it for a moment, or for good if `confirm` was killed right after.)"""
    return (state.read("confirmed") or {}).get("job") == pending.get("id")


def timer_alarm(state: State) -> str | None:
    """The alarm for a rollback timer that will not fire (None: no timer, or a live one)."""
    p = state.read("pending")
    if p is None or worker_alive(p) or confirmed(state, p):
        return None
    version = (state.read("applied") or {}).get("version", "?")
    if p.get("boot") != boot_id():
        return (f"ALARM: an unconfirmed apply ({version}) was pending when this machine rebooted; its rollback "
                "timer is gone and the saved rollback target belongs to the earlier boot. Run `stockade repair` "
                "to discard it (what is live now stays), or `stockade confirm` to keep what is live")
    return (f"ALARM: the rollback timer of the unconfirmed apply ({version}) is dead (worker {p.get('pid')} is "
            "gone): nothing will roll it back. Run `stockade rollback` (or `stockade repair`) to restore the "
            "previous ruleset, or `stockade confirm` to keep it")


def restore_previous(host: Host, state: State, reason: str) -> OwnedPart:
    """Make the saved previous part live again (caller holds the lock); record it as applied. The
    kernel comes first; the timer is removed once it is back, the record last (WriteError then says so)."""
    recover(host, state)
    saved = state.read("previous")
    prev = OwnedPart.from_json(saved["part"])
    apply(host, read_part(host, prev.backend), prev, state)
    live = read_part(host, prev.backend)
    state.remove("pending")
    before = saved.get("applied") or {}  # what stockade had applied when the part was saved
    try:
        state.write("applied", {**before, "version": live.digest, "at": now(), "backend": live.backend,
                                "part": live.to_json(), "rolled_back": reason, "policy": before.get("policy")})
    except WriteError as e:
        raise KernelError(f"restored {live.digest} (live now), but {e}") from None
    return live


def _here(state: State) -> Host:
    """The worker already runs inside the namespace (named by its state dir, "host" for this machine's)."""
    return Host(None, None if state.dir.name == "host" else state.dir.name)


def _work(state: State, job_id: str, lock_fd: int, report_fd: int) -> dict | None:
    """The transaction and arming; returns the pending record to wait on (None: nothing to wait for)."""
    host = _here(state)
    job = state.read("job")
    report: dict = {"ok": False, "error": "job vanished"}
    pending = None
    try:
        if job and job["id"] == job_id:
            report = _transaction(host, state, job)
            pending = report.pop("wait", None)
    except KernelError as e:  # reported to `apply`, which prints it
        report = {"ok": False, "error": str(e)}
    except Exception as e:  # noqa: BLE001 -- never a silent worker: the report says what happened
        report = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        os.close(lock_fd)
        try:
            with os.fdopen(report_fd, "w") as f:
                f.write(json.dumps(report))
        except OSError:  # `apply` is gone (killed): the timer does not need it
            pass
    return pending


def _transaction(host: Host, state: State, job: dict) -> dict:
    """Arm, change, record. Each failure leaves the old part live, or the new one with this live timer."""
    recover(host, state)
    target = OwnedPart.from_json(job["target"])
    before = read_part(host, target.backend)
    timeout = job["timeout"]
    pending = {"id": job["id"], "deadline": time.time() + timeout, "clock_deadline": clock() + timeout,
               "boot": boot_id(), "armed_at": now(), "pid": os.getpid(), "confirm": timeout > 0}
    try:
        state.write("pending", pending)  # the timer exists before the kernel changes
    except WriteError as e:
        return {"ok": False, "error": f"{e}; nothing was changed", "live": before.digest}
    try:
        apply(host, before, target, state)
    except KernelError as e:  # nothing changed (transaction.py): no timer needed
        state.remove("pending")
        return {"ok": False, "error": f"{e}; nothing was changed", "live": before.digest}
    live = read_part(host, target.backend)
    record = {"version": live.digest, "at": now(), "job": job["id"], "policy": job["policy"], "backend": live.backend,
              "part": live.to_json(), "policy_text": job.get("policy_text"),
              "target": job["target"]["digest"],  # the compiled part: `apply --check` knows it is live
              "shape": nft_shape(target.text.get("nft", ""))}  # nft: a re-apply changing only members is in place
    try:
        state.write("applied", record)
        if timeout == 0:
            state.write("confirmed", {**record, "confirmed_at": now()})
            state.remove("pending")
    except WriteError as e:
        try:  # at once, without a journal (the disk may be full): killed in between, the timer is still there
            apply(host, live, before, None)
            state.remove("pending")
        except KernelError as again:
            return {"ok": False, "wait": pending, "live": live.digest, "error": (
                f"{e}; rolling back at once failed too ({again}): the new ruleset {live.digest} is live and the "
                f"timer restores the previous one at {time.strftime('%H:%M:%S', time.localtime(pending['deadline']))}")}
        return {"ok": False, "live": before.digest,
                "error": f"{e}; the new ruleset was rolled back at once: the previous ruleset ({before.digest}) "
                         "is live"}
    if timeout == 0:
        return {"ok": True, "version": live.digest, "deadline": None, "worker": os.getpid()}
    # the full timeout counts from the change; the record written before it had an earlier deadline,
    # which stands if this rewrite fails (the timer then fires a little early, never not at all)
    pending = {**pending, "deadline": time.time() + timeout, "clock_deadline": clock() + timeout}
    try:
        state.write("pending", pending)
    except WriteError:
        pass
    return {"ok": True, "version": live.digest, "deadline": pending["deadline"], "worker": os.getpid(),
            "wait": pending}


def _wait_and_rollback(state: State, mine: dict) -> None:
    job_id = mine["id"]
    try:
        while True:
            p = state.read("pending")
            if not p or p["id"] != job_id or confirmed(state, p):
                return  # confirmed, rolled back by hand, or superseded by a newer apply
            left = mine["clock_deadline"] - clock()
            if left <= 0:
                break
            time.sleep(min(POLL, left))
    except Exception as e:  # noqa: BLE001 -- a timer that cannot wait fires now rather than never
        print(f"{now()} the timer of job {job_id} cannot wait ({type(e).__name__}: {e}): rolling back now", flush=True)
    reason = "not confirmed in time"
    while True:
        try:
            with locked(state.dir / "lock", timeout=600):
                p = state.read("pending")
                if p and p["id"] == job_id and not confirmed(state, p):
                    restore_previous(_here(state), state, reason)
                    print(f"{now()} rolled back job {job_id}: {reason}", flush=True)
            return
        except KernelError as e:  # the kernel or the disk refused: keep trying, the timer stays
            print(f"{now()} rollback of job {job_id} failed, retrying: {e}", flush=True)
            if (state.read("pending") or {}).get("id") != job_id:
                return
            time.sleep(1)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    _own_cgroup()
    state_dir, job_id, lock_fd, report_fd = argv
    state = State(Path(state_dir))
    pending = _work(state, job_id, int(lock_fd), int(report_fd))
    if pending is not None:
        _wait_and_rollback(state, pending)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
