"""Issue 14, the fault matrix: apply, confirm, rollback and persist, each hit by a full disk
(ENOSPC, the disk kept full from the moment on), a write that fails (from the start: a read-only
bind mount, EROFS; at a moment: the write of that one file fails, EISDIR, because a directory
stands where it goes: an I/O error at exactly that write), SIGKILL of the command, and SIGKILL of
the rollback worker, each at the moments the command passes through (from the start; when the
timer is armed; when the transaction's journal is written; when the result is recorded). Kills
and ENOSPC land when a watcher sees the moment's file change, so they may land a little later. The state dir (and persist's root) is a small tmpfs in a
private mount namespace. For every cell the outcome is the old ruleset, or the new one with a live
timer (or confirmed, for `confirm`); never the new one without a timer. A killed worker is the one
way to lose a timer: then every command reports an ALARM (exit 1) until `stockade repair`, and
after it the outcome is again one of the two. The command's message matches what is live."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from stockade.kernel.lock import held
from stockade.kernel.netns import Netns

from .kernelkit import STOCKADE, SmallDisk, env, full_text, kill, policies, stockade_in, wait_for, worker_pids

pytestmark = pytest.mark.kernel
BACKEND = "iptables-nft"
FAULTS = ("enospc", "write-fails", "kill-command", "kill-worker")
MOMENTS = {"apply": ("start", "pending", "journal", "applied"), "confirm": ("start", "confirmed"),
           "rollback": ("start", "applied"), "persist": ("start", "written")}
RESULTS: list[dict] = []


def _changed(disk, path):
    p = disk.path(path)
    first = p.stat().st_mtime_ns if p.exists() else None
    return lambda: p.exists() and p.stat().st_mtime_ns != first


def _fault(disk, fault: str, proc: subprocess.Popen, ns) -> None:
    if fault == "enospc":
        disk._filler = disk.full_from(None).__enter__()
    elif fault == "write-fails":
        disk.readonly(True)
    elif fault == "kill-command":
        kill([proc.pid])
    else:
        kill(worker_pids(ns))


def _undo(disk, fault: str) -> None:
    if fault == "enospc":
        disk._filler.__exit__(None, None, None)
    elif fault == "write-fails":
        disk.readonly(False)


def _state(ns, st, disk, old_text, new_text) -> dict:
    s = stockade_in(disk, ["status", "--netns", ns.name, "--json"], st)
    info = json.loads(s.stdout)
    live = full_text(ns, BACKEND)
    ruleset = "old" if live == old_text else "new" if live == new_text else "MIX"
    confirmed = (info["confirmed"] or {}).get("version") == info["live_version"]
    timer = info["pending"] is not None and not info["alarms"]
    return {"ruleset": ruleset, "timer": timer, "confirmed": confirmed, "alarm": bool(info["alarms"]),
            "status_exit": s.returncode, "live_version": info["live_version"]}


def _ok(o: dict, command: str) -> bool:
    return o["ruleset"] == "old" or (o["ruleset"] == "new" and (o["timer"] or (command != "apply" and o["confirmed"])))


@pytest.mark.parametrize(("command", "fault", "moment"),
                         [(c, f, m) for c, ms in MOMENTS.items() for f in FAULTS for m in ms
                          if not (f == "kill-worker" and (c == "persist" or (c, m) == ("apply", "start")))])
def test_cell(kernel_ok, tmp_path, command, fault, moment):
    old, new = policies(tmp_path)
    with Netns() as ns, SmallDisk(tmp_path / "disk", "4m") as disk:
        st, root = disk.dir / "state", disk.dir / "root"
        disk.path(root / "etc/iptables").mkdir(parents=True)
        def run(args):
            return stockade_in(disk, args, st)
        assert run(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0", "--backend", BACKEND]).returncode == 0
        old_text = full_text(ns, BACKEND)
        if command == "persist":
            assert run(["persist", "--netns", ns.name, "--root", str(root)]).returncode == 0
        if command in ("confirm", "rollback"):
            assert run(["apply", str(new), "--netns", ns.name, "--confirm-timeout", "60", "--force"]).returncode == 0
        new_text = full_text(ns, BACKEND) if command != "apply" else None
        if command == "apply":  # what the new policy looks like live, from a twin namespace
            with Netns() as twin:
                assert stockade_in(None, ["apply", str(new), "--netns", twin.name, "--confirm-timeout", "0",
                                          "--force", "--backend", BACKEND], tmp_path / "twin").returncode == 0
                new_text = full_text(twin, BACKEND)
        if command == "persist":  # a persisted boot file that changes: the admin's rules are new
            new_text = old_text
        args = {"apply": ["apply", str(new), "--netns", ns.name, "--confirm-timeout", "60", "--force"],
                "confirm": ["confirm", "--netns", ns.name], "rollback": ["rollback", "--netns", ns.name],
                "persist": ["persist", "--netns", ns.name, "--root", str(root)]}[command]
        sd = st / ns.name
        trigger = {"start": lambda: True, "pending": lambda: disk.path(sd / "pending.json").exists(),
                   "journal": lambda: disk.path(sd / "journal.json").exists(),
                   "applied": _changed(disk, sd / "applied.json"), "confirmed": _changed(disk, sd / "confirmed.json"),
                   "written": _changed(disk, root / "etc/iptables/rules.v4")}[moment]
        blocked = {"pending": sd / "pending.json", "journal": sd / "journal.json", "applied": sd / "applied.json",
                   "confirmed": sd / "confirmed.json", "written": root / "etc/iptables/rules.v6"}.get(moment)
        if fault == "write-fails" and blocked is not None:  # that one write fails, deterministically
            saved = disk.path(blocked).read_bytes() if disk.path(blocked).exists() else None
            disk.path(blocked).unlink(missing_ok=True)
            disk.path(blocked).mkdir()
            trigger, fault = None, "none"
        elif moment == "start" and fault in ("enospc", "write-fails"):
            _fault(disk, fault, None, ns)
            trigger = None
        proc = subprocess.Popen(disk.argv([STOCKADE, *args]), env=env(st), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        fired = trigger is None
        if trigger is not None:
            wait_for(lambda: trigger() or proc.poll() is not None, 60, 0.001)
            if proc.poll() is None or trigger():
                _fault(disk, fault, proc, ns)
                fired = True
        out, err = proc.communicate()
        if fault == "none":  # the obstacle goes, the file that stood there comes back
            disk.path(blocked).rmdir()
            if saved is not None and not disk.path(blocked).exists():
                disk.path(blocked).write_bytes(saved)
        assert "Traceback" not in err, err
        after_cmd = _state_safe(ns, old_text, new_text)
        if fired:
            _undo(disk, fault)
        wait_for(lambda: not held(disk.path(sd / "lock")), 30)
        o = _state(ns, st, disk, old_text, new_text)
        repaired = None
        if o["alarm"]:
            assert o["status_exit"] == 1
            r = run(["repair", "--netns", ns.name])
            assert r.returncode == 0, r.stderr
            repaired = _state(ns, st, disk, old_text, new_text)
        final = repaired or o
        cell = {"command": command, "fault": "write-fails" if fault == "none" else fault, "moment": moment, "fired": fired, "exit": proc.returncode,
                "message": (err.strip().splitlines() or [""])[-1][-160:], "during_fault": after_cmd,
                "outcome": {k: o[k] for k in ("ruleset", "timer", "confirmed", "alarm")},
                "after_repair": repaired and {k: repaired[k] for k in ("ruleset", "timer", "confirmed", "alarm")}}
        RESULTS.append(cell)
        print("\nCELL " + json.dumps(cell))
        if os.environ.get("STOCKADE_MATRIX_OUT"):  # the table for a report
            with open(os.environ["STOCKADE_MATRIX_OUT"], "a") as f:
                f.write(json.dumps(cell) + "\n")
        assert o["ruleset"] != "MIX" or o["alarm"], cell
        assert _ok(final, command), cell
        # without an alarm, the new ruleset is never live without its timer (or, after confirm, confirmed)
        assert o["alarm"] or _ok(o, command), cell
        _message_matches(command, proc.returncode, err + out, o, fault)
        if command == "persist":
            _boot_files_load(disk, root)


def _state_safe(ns, old_text, new_text) -> str:
    live = full_text(ns, BACKEND)
    return "old" if live == old_text else "new" if live == new_text else "MIX"


def _message_matches(command: str, code: int, text: str, o: dict, fault: str) -> None:
    if fault == "kill-command" or code < 0:
        return  # killed: no message
    if command == "apply":
        if code == 0 and fault != "kill-worker":
            assert o["ruleset"] == "new" and "rolls back to" in text, text
        elif code != 0 and ("nothing was changed" in text or "rolled back at once" in text):
            assert o["ruleset"] == "old", text
    if command == "confirm" and code == 0 and fault != "kill-worker":
        assert o["confirmed"], text
    if command == "confirm" and code != 0 and o["ruleset"] == "new" and not o["alarm"]:
        assert o["timer"], text  # not confirmed: the timer still runs
    if command == "rollback" and code == 0:
        assert o["ruleset"] == "old", text


def _boot_files_load(disk, root) -> None:
    with Netns() as ns:
        for tool, name in (("ipset", "ipsets"), ("iptables-nft-restore", "rules.v4"), ("ip6tables-nft-restore", "rules.v6")):
            p = disk.path(root / "etc/iptables" / name)
            argv = ["ipset", "restore"] if tool == "ipset" else [tool]
            assert ns.run(argv, input=p.read_text(), check=False).returncode == 0, (name, p.read_text()[:300])


def test_zz_matrix_summary():
    """Prints the matrix (run with -s); the cells themselves assert."""
    for c in RESULTS:
        print(f"{c['command']:<9} {c['fault']:<13} {c['moment']:<10} exit {c['exit']:>3}  "
              f"{c['outcome']}  repair: {c['after_repair']}")
