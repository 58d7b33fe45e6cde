"""Issue 14, Medium 7: a dead rollback worker is an alarm, from `status` and every other command,
with a non-zero exit; the worker outlives the session that ran `apply` (its process group killed);
a pending apply left from an earlier boot (another boot id) is resolved explicitly, never kept as
the next apply's rollback target."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from .kernelkit import STOCKADE, env, full_text, kill, policies, stockade_in, worker_pids

pytestmark = pytest.mark.kernel
BACKEND = "iptables-nft"


def _apply(policy, ns, st, timeout: int):
    return stockade_in(None, ["apply", str(policy), "--netns", ns.name, "--confirm-timeout", str(timeout), "--force",
                              "--backend", BACKEND], st)


def test_dead_worker_is_an_alarm_everywhere(netns, tmp_path):
    old, new = policies(tmp_path)
    st = tmp_path / "state"
    assert _apply(old, netns, st, 0).returncode == 0
    old_text = full_text(netns, BACKEND)
    # the apply runs in its own session, like an SSH login; killing that session's process group
    # must leave the worker (and so the timer) alive
    session = subprocess.Popen([STOCKADE, "apply", str(new), "--netns", netns.name, "--confirm-timeout", "60",
                                "--force", "--backend", BACKEND], env=env(st), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    session.communicate()
    assert session.returncode == 0
    try:
        os.killpg(session.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    ok = stockade_in(None, ["status", "--netns", netns.name, "--json"], st)
    assert ok.returncode == 0 and json.loads(ok.stdout)["pending"]["seconds_left"] > 50, ok.stderr
    new_text = full_text(netns, BACKEND)
    kill(worker_pids(netns))  # the timer dies
    s = stockade_in(None, ["status", "--netns", netns.name], st)
    assert s.returncode == 1 and "ALARM" in s.stdout and "dead" in s.stdout and "rolls back in" not in s.stdout
    p = stockade_in(None, ["persist", "--netns", netns.name, "--status", "--root", str(tmp_path / "root")], st)
    assert p.returncode == 1 and "ALARM" in p.stderr, p.stderr
    assert full_text(netns, BACKEND) == new_text  # reporting changed nothing
    r = stockade_in(None, ["rollback", "--netns", netns.name], st)
    assert r.returncode == 0 and "ALARM" not in r.stderr, r.stderr
    assert full_text(netns, BACKEND) == old_text
    assert stockade_in(None, ["status", "--netns", netns.name], st).returncode == 0


def test_pending_from_an_earlier_boot_is_not_the_next_rollback_target(netns, tmp_path):
    old, new = policies(tmp_path)
    st = tmp_path / "state"
    assert _apply(old, netns, st, 0).returncode == 0
    assert _apply(new, netns, st, 60).returncode == 0
    kill(worker_pids(netns))
    # the reboot: the rules are gone with the kernel, the state dir stays, the boot id changes
    netns.run(["nft", "flush", "ruleset"])
    for name in netns.run(["ipset", "list", "-n"]).stdout.split():
        netns.run(["ipset", "destroy", name])
    booted = json.loads(stockade_in(None, ["status", "--netns", netns.name, "--json"], st).stdout)["live_version"]
    pending = st / netns.name / "pending.json"
    pending.write_text(json.dumps({**json.loads(pending.read_text()), "boot": "00000000-0000-0000-0000-000000000000"}))
    s = stockade_in(None, ["status", "--netns", netns.name], st)
    assert s.returncode == 1 and "rebooted" in s.stdout, s.stdout
    a = _apply(new, netns, st, 60)
    assert a.returncode == 0 and "earlier boot" in a.stdout + a.stderr, a.stderr
    assert stockade_in(None, ["rollback", "--netns", netns.name], st).returncode == 0
    after = json.loads(stockade_in(None, ["status", "--netns", netns.name, "--json"], st).stdout)["live_version"]
    assert after == booted  # what was live when this apply began, not the old boot's rules

