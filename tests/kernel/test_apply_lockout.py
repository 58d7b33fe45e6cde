"""Issue 6, Must show "Lockout": a policy that shuts the admin out is applied (--force past the
check) with a 2 s confirm timeout and never confirmed; the old ruleset must be back within
timeout + 2 s, in 20 of 20 trials, half of them with `stockade apply` SIGKILLed right after it
applied, on iptables-nft and nftables. "Back" is the live ruleset text (both families, every
table) equal to what it was, and a real SYN from the admin getting an answer again. A further test
ends the whole session `apply` ran in (SIGHUP, then SIGKILL to its process group) and the timer
still fires. Without --force, the check refuses and nothing changes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from stockade.kernel.netns import Netns
from stockade.lab.topology import CLIENT_V4, SERVER_V4, Topology

from .applylab import (
    LISTENER,
    PY,
    STOCKADE,
    connects,
    env,
    full_text,
    listen,
    policies,
    stockade,
    wait_until,
)

TIMEOUT = 2
TRIALS = 20
BACKENDS = ("iptables-nft", "nftables")


def _trial(i: int, base) -> dict:
    backend, kill = BACKENDS[i % 2], i % 4 >= 2
    tmp = base / f"t{i}"
    tmp.mkdir()
    state = tmp / "state"
    old, new = policies(tmp)
    with Topology() as t:
        listen(t.server, [22])
        ns = t.server.name
        stockade(["apply", str(old), "--netns", ns, "--confirm-timeout", "0", "--backend", backend], state)
        text_old = full_text(t.server, backend)
        assert connects(t.client, SERVER_V4, 22), "the admin cannot connect under the old policy"
        argv = [STOCKADE, "apply", str(new), "--netns", ns, "--force", "--confirm-timeout", str(TIMEOUT),
                "--backend", backend]
        proc = subprocess.Popen(argv, env=env(state), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kill:
            assert wait_until(lambda: full_text(t.server, backend) != text_old, 30) is not None  # a busy machine
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            assert proc.wait() == 0, proc.stderr.read()
        applied = time.monotonic()
        assert full_text(t.server, backend) != text_old
        locked_out = not connects(t.client, SERVER_V4, 22, timeout=0.3)
        back = wait_until(lambda: full_text(t.server, backend) == text_old, TIMEOUT + 5)
        seconds = time.monotonic() - applied
        reachable = connects(t.client, SERVER_V4, 22)
    return {"trial": i, "backend": backend, "killed": kill, "locked_out": locked_out,
            "back_after": None if back is None else round(seconds, 2), "admin_syn_ok": reachable}


def test_lockout_is_undone_in_time(kernel_ok, tmp_path):
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: _trial(i, tmp_path), range(TRIALS)))
    for r in results:
        print(json.dumps(r))
    ok = [r for r in results if r["locked_out"] and r["back_after"] is not None
          and r["back_after"] <= TIMEOUT + 2 and r["admin_syn_ok"]]
    worst = max((r["back_after"] or 99) for r in results)
    print(f"lockout: {len(ok)}/{TRIALS} back within {TIMEOUT}+2 s (slowest {worst} s; "
          f"{sum(r['killed'] for r in results)} with apply SIGKILLed)")
    assert len(ok) == TRIALS, [r for r in results if r not in ok]


def test_timer_survives_the_session_ending(kernel_ok, tmp_path):
    """`apply` runs inside a shell that is its own session (as an SSH login is); the session gets
    SIGHUP and then SIGKILL to its whole process group right after apply returned."""
    old, new = policies(tmp_path)
    state = tmp_path / "state"
    with Topology() as t:
        listen(t.server, [22])
        ns = t.server.name
        stockade(["apply", str(old), "--netns", ns, "--confirm-timeout", "0"], state)
        text_old = full_text(t.server, "nftables")
        marker = tmp_path / "applied"
        script = (f"{STOCKADE} apply {new} --netns {ns} --force --confirm-timeout {TIMEOUT} >/dev/null 2>&1; "
                  f"touch {marker}; sleep 600")
        session = subprocess.Popen(["bash", "-c", script], start_new_session=True, env=env(state))
        assert wait_until(marker.exists, 10) is not None
        os.killpg(session.pid, signal.SIGHUP)
        os.killpg(session.pid, signal.SIGKILL)
        session.wait()
        applied = time.monotonic()
        assert full_text(t.server, "nftables") != text_old
        assert wait_until(lambda: full_text(t.server, "nftables") == text_old, TIMEOUT + 5) is not None
        assert time.monotonic() - applied <= TIMEOUT + 2
        assert connects(t.client, SERVER_V4, 22)


def test_refuses_without_force_and_changes_nothing(kernel_ok, tmp_path):
    old, new = policies(tmp_path)
    state = tmp_path / "state"
    with Topology() as t:
        ns = t.server.name
        stockade(["apply", str(old), "--netns", ns, "--confirm-timeout", "0", "--backend", "iptables-nft"], state)
        before = full_text(t.server, "iptables-nft")
        r = stockade(["apply", str(new), "--netns", ns, "--backend", "iptables-nft"], state, check=False,
                     SSH_CONNECTION=f"{CLIENT_V4} 50000 {SERVER_V4} 22")
        assert r.returncode == 1
        assert f"this ssh session {CLIENT_V4}" in r.stderr and "Traceback" not in r.stderr
        assert "hint: fix the policy's admin group or ssh allowance, or pass --force" in r.stderr
        assert full_text(t.server, "iptables-nft") == before
        # The old policy keeps the session (admin group): accepted without --force.
        stockade(["apply", str(old), "--netns", ns, "--confirm-timeout", "0", "--backend", "iptables-nft"], state,
                 SSH_CONNECTION=f"{CLIENT_V4} 50000 {SERVER_V4} 22")


def test_refuses_when_an_established_ssh_client_would_be_cut_off(kernel_ok, tmp_path):
    """No SSH_* variables: the session is found by `ss` in the namespace, an established connection
    to the port a process named sshd listens on (here the echo listener, started as `sshd`)."""
    old, new = policies(tmp_path)
    state = tmp_path / "state"
    sshd = tmp_path / "sshd"
    sshd.symlink_to(PY)
    with Topology() as t:
        t.server.spawn([str(sshd), "-c", LISTENER, "2222"], stdout=subprocess.PIPE, text=True).stdout.readline()
        ns = t.server.name
        stockade(["apply", str(old), "--netns", ns, "--confirm-timeout", "0"], state)
        code = "import socket,sys,time; s=socket.create_connection((sys.argv[1], 2222)); print('up', flush=True); " \
               "time.sleep(60)"
        client = t.client.spawn([PY, "-c", code, SERVER_V4], stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "up"
        before = full_text(t.server, "nftables")
        r = stockade(["apply", str(new), "--netns", ns, "--json"], state, check=False)
        assert r.returncode == 1, r.stderr
        blocked = json.loads(r.stdout)["blocked"]
        assert {(b["who"], b["src"], b["port"], b["packet"]) for b in blocked} >= {
            ("ssh client (ss)", CLIENT_V4, 2222, "NEW SYN")}
        assert full_text(t.server, "nftables") == before


def test_confirm_keeps_it_and_a_newer_apply_replaces_the_timer(kernel_ok, tmp_path):
    old, new = policies(tmp_path)
    state = tmp_path / "state"
    with Netns() as ns:
        stockade(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0"], state)
        text_old = full_text(ns, "nftables")
        stockade(["apply", str(new), "--netns", ns.name, "--force", "--confirm-timeout", "2"], state)
        text_new = full_text(ns, "nftables")
        stockade(["confirm", "--netns", ns.name], state)
        time.sleep(TIMEOUT + 1)
        assert full_text(ns, "nftables") == text_new  # confirmed: the timer did not fire
        st = json.loads(stockade(["status", "--netns", ns.name, "--json"], state).stdout)
        assert st["confirmed"]["version"] == st["live_version"] and not st["drift"] and st["pending"] is None
        # Unconfirmed apply, then another before its deadline: only the newer timer counts, and it
        # returns to the ruleset from before both.
        stockade(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "2"], state)
        stockade(["apply", str(new), "--netns", ns.name, "--force", "--confirm-timeout", "4"], state)
        time.sleep(TIMEOUT + 0.5)
        assert full_text(ns, "nftables") == text_new  # the first timer is gone
        assert wait_until(lambda: full_text(ns, "nftables") == text_new and json.loads(stockade(
            ["status", "--netns", ns.name, "--json"], state).stdout)["pending"] is None, 5) is not None
        assert text_old != text_new
