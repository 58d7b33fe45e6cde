"""`stockade apply --check`: reads, never changes. Before an apply it says the policy would change the
host and lists the packet classes; right after the apply it says nothing would change (the idempotence
Ansible's check mode and second runs rely on); after the rollback timer fired, a change again. The
kernel's rulesets are byte-identical before and after each check."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def stockade(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True,
                          check=False, timeout=120, env=env)


def kernel_text(ns) -> str:
    return "".join(ns.run(argv, check=False).stdout for argv in (["nft", "list", "ruleset"], ["iptables-save"],
                                                                 ["ip6tables-save"], ["ipset", "save"]))


def test_check_reads_and_says_whether_apply_would_change(netns, tmp_path):
    env = dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "state"))
    policy = str(EXAMPLES / "002-mail.toml")

    def check() -> dict:
        before = kernel_text(netns)
        r = stockade("apply", policy, "--netns", netns.name, "--check", "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert kernel_text(netns) == before
        return json.loads(r.stdout)

    first = check()
    assert first["changed"] and first["diff"]["changed"] > 0 and not first["pending"]
    r = stockade("apply", policy, "--netns", netns.name, "--confirm-timeout", "20", "--json", env=env)
    assert r.returncode == 0, r.stderr
    armed = time.monotonic()
    again = check()
    assert time.monotonic() - armed < 20, "the check outlasted the timer: it proves nothing"
    assert not again["changed"] and again["pending"] and again["diff"] is None
    time.sleep(max(0.0, armed + 24 - time.monotonic()))  # the timer rolls back
    assert check()["changed"]
