"""Issue 14, Medium 8: `status` never changes the kernel: a journal a killed transaction left is an
alarm (exit 1), not a silent repair that wipes the admin's emergency rule; `stockade repair` is the
explicit undo and says what it undoes; a failed transaction removes its own journal."""
from __future__ import annotations

import json

import pytest

from stockade.kernel.host import Host, KernelError
from stockade.kernel.live import read_part
from stockade.kernel.part import OwnedPart, desired
from stockade.kernel.state import State
from stockade.kernel.transaction import apply
from stockade.policy.compile import compile_policy

from .kernelkit import full_text, policies, stockade_in

pytestmark = pytest.mark.kernel
BACKEND = "iptables-nft"


def test_status_reports_a_left_journal_and_changes_nothing(netns, tmp_path, monkeypatch):
    old, new = policies(tmp_path)
    st = tmp_path / "state"
    assert stockade_in(None, ["apply", str(old), "--netns", netns.name, "--confirm-timeout", "0", "--backend",
                              BACKEND], st).returncode == 0
    monkeypatch.setenv("STOCKADE_STATE_DIR", str(st))
    host, state = Host(netns.name), State.for_netns(netns.name)
    live = read_part(host, BACKEND)
    # what a process killed inside a transaction leaves: the journal
    state.write("journal", {"from": live.to_json(), "to": desired(compile_policy(new), BACKEND, {}).to_json()})
    netns.run(["iptables-nft", "-I", "stk-in", "1", "-s", "203.0.113.9", "-j", "ACCEPT"])  # the admin's emergency rule
    before = full_text(netns, BACKEND)
    s = stockade_in(None, ["status", "--netns", netns.name, "--json"], st)
    assert s.returncode == 1 and any("half done" in a for a in json.loads(s.stdout)["alarms"]), s.stdout
    assert full_text(netns, BACKEND) == before and "203.0.113.9" in before
    r = stockade_in(None, ["repair", "--netns", netns.name], st)
    assert r.returncode == 0 and f"{live.digest} is live again" in r.stdout, r.stdout + r.stderr
    assert "203.0.113.9" not in full_text(netns, BACKEND)
    assert stockade_in(None, ["status", "--netns", netns.name], st).returncode == 0


def test_failed_transaction_removes_its_journal(netns, tmp_path, monkeypatch):
    old, _ = policies(tmp_path)
    monkeypatch.setenv("STOCKADE_STATE_DIR", str(tmp_path / "state"))
    host, state = Host(netns.name), State.for_netns(netns.name)
    good = desired(compile_policy(old), BACKEND, {})
    apply(host, read_part(host, BACKEND), good, state)
    live = read_part(host, BACKEND).digest
    bad = OwnedPart(BACKEND, {**good.text, "6": good.text["6"].replace("COMMIT", "-A stk-in -m nosuchmatch -j ACCEPT\nCOMMIT")})
    with pytest.raises(KernelError):
        apply(host, read_part(host, BACKEND), bad, state)
    assert read_part(host, BACKEND).digest == live
    assert state.read("journal") is None
