"""Issue 14, Low items of the kernel part, one test each: `rollback` after `confirm`; namespace names
that are path components (`../x`) or the host's state (`host`); a group name whose set name is too
long for ipset once the generation suffix is added; ENOSPC in `persist` (a traceback before)."""
from __future__ import annotations

import pytest

from .kernelkit import SmallDisk, full_text, policies, stockade_in

pytestmark = pytest.mark.kernel
BACKEND = "iptables-nft"


def test_rollback_after_confirm_is_refused(netns, tmp_path):
    old, new = policies(tmp_path)
    st = tmp_path / "state"
    for p, t in ((old, "0"), (new, "60")):
        assert stockade_in(None, ["apply", str(p), "--netns", netns.name, "--confirm-timeout", t, "--force",
                                  "--backend", BACKEND], st).returncode == 0
    assert stockade_in(None, ["confirm", "--netns", netns.name], st).returncode == 0
    confirmed = full_text(netns, BACKEND)
    r = stockade_in(None, ["rollback", "--netns", netns.name], st)
    assert r.returncode == 2 and "nothing to roll back" in r.stderr, r.stderr
    assert full_text(netns, BACKEND) == confirmed


def test_netns_names_are_not_paths(tmp_path):
    st = tmp_path / "base" / "state"
    for name in ("../x", "host", "a/b", ".."):
        p = stockade_in(None, ["status", "--netns", name], st)
        assert p.returncode == 2 and "invalid network namespace name" in p.stderr, (name, p.stderr)
    assert not (tmp_path / "base" / "x").exists() and not (st / "host").exists()


def test_long_group_name_is_refused_at_check(tmp_path):
    name = "a" * 20  # stk-<20>-net4 plus the generation suffix -a: 32 characters, ipset allows 31
    pol = tmp_path / "p.toml"
    pol.write_text(f'admin = ["{name}"]\n[server]\ninterfaces = ["in0"]\n[groups]\n{name} = ["192.0.2.0/24"]\n')
    p = stockade_in(None, ["check", str(pol)], tmp_path / "state")
    assert p.returncode == 1 and f"{pol}:" in p.stderr and "at most 19" in p.stderr, p.stderr


def test_persist_on_a_full_disk_is_an_error_line(netns, tmp_path):
    old, _ = policies(tmp_path)
    st = tmp_path / "state"
    assert stockade_in(None, ["apply", str(old), "--netns", netns.name, "--confirm-timeout", "0",
                              "--backend", BACKEND], st).returncode == 0
    with SmallDisk(tmp_path / "root", "64k") as disk:
        (disk.path(disk.dir) / "etc" / "iptables").mkdir(parents=True)
        with disk.full_from(None):
            p = stockade_in(disk, ["persist", "--netns", netns.name, "--root", str(disk.dir)], st)
        assert p.returncode == 2 and "Traceback" not in p.stderr and "No space left" in p.stderr, p.stderr
        assert not list((disk.path(disk.dir) / "etc" / "iptables").iterdir())  # no torn or temp file left


def test_a_stk_name_proves_no_ownership(netns, tmp_path):
    """An admin's chain and set that happen to be named `stk-...` are not stockade's: applies leave
    them (ownership is stockade's comment on its hooks, and the chains and sets reachable from them)."""
    old, new = policies(tmp_path)
    st = tmp_path / "state"
    netns.run(["ipset", "create", "stk-blocklist", "hash:net"])
    netns.run(["ipset", "add", "stk-blocklist", "203.0.113.0/24"])
    netns.run(["iptables-nft", "-N", "stk-admin"])
    netns.run(["iptables-nft", "-A", "stk-admin", "-m", "set", "--match-set", "stk-blocklist", "src", "-j", "DROP"])
    netns.run(["iptables-nft", "-A", "INPUT", "-j", "stk-admin"])
    for p, t in ((old, "0"), (new, "0")):
        a = stockade_in(None, ["apply", str(p), "--netns", netns.name, "--confirm-timeout", t, "--force",
                               "--backend", BACKEND], st)
        assert a.returncode == 0, a.stderr
    live = netns.run(["iptables-nft-save"]).stdout
    assert "-A INPUT -j stk-admin" in live and "-A stk-admin -m set --match-set stk-blocklist src -j DROP" in live
    assert "203.0.113.0/24" in netns.run(["ipset", "list", "stk-blocklist"]).stdout
