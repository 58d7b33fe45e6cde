"""Transactions that fail part-way change nothing: a bad IPv6 part after IPv4 was committed (IPv4 is
restored and the new sets destroyed), a bad set, a bad set among those staged at once, a bad nft
table; and a journal left by a killed transaction is undone by the next command that takes the lock."""
from __future__ import annotations

import ipaddress
import os
import re

import pytest

from stockade.kernel import transaction
from stockade.kernel.host import Host, KernelError
from stockade.kernel.live import read_part
from stockade.kernel.part import OwnedPart, desired
from stockade.kernel.state import State
from stockade.kernel.transaction import _physical, apply, recover, restore_text
from stockade.policy.compile import compile_policy

from .applylab import full_text, policies


def _parts(tmp_path, backend):
    old, new = policies(tmp_path)
    return desired(compile_policy(old), backend, {}), desired(compile_policy(new), backend, {})


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_failing_second_family_restores_the_first(netns, tmp_path, backend):
    a, b = _parts(tmp_path, backend)
    host = Host(netns.name)
    apply(host, read_part(host, backend), a)
    before, sets = full_text(netns, backend), netns.run(["ipset", "save"]).stdout
    bad = OwnedPart(backend, {**b.text, "6": b.text["6"].replace("COMMIT", "-A stk-in -m nosuchmatch -j ACCEPT\nCOMMIT")})
    with pytest.raises(KernelError, match="ip6tables"):
        apply(host, read_part(host, backend), bad)
    assert full_text(netns, backend) == before
    assert netns.run(["ipset", "save"]).stdout == sets  # the new generation's sets are gone again
    bad_set = OwnedPart(backend, {**b.text, "sets": b.text["sets"] + "add stk-admins-ip4 not-an-address\n"})
    with pytest.raises(KernelError, match="ipset"):
        apply(host, read_part(host, backend), bad_set)
    assert full_text(netns, backend) == before and netns.run(["ipset", "save"]).stdout == sets


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_sets_staged_at_once(netns, tmp_path, backend, monkeypatch):
    """Past STAGE_BYTES, one `ipset restore` creates every set, then one per CPU loads an equal share of
    the adds, all at once, sets cut between them (as a million-member set is), each process naming the
    sets it adds to with `create ... -exist` first: the new sets hold exactly the new members. One add
    the kernel refuses fails the whole stage, and the old rules and sets stay as they were, the new
    generation's sets gone."""
    monkeypatch.setattr(transaction, "STAGE_BYTES", 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})  # four processes, on any CI
    restores = []
    run = Host.run

    def counted(self, argv, *args, **kwargs):
        restores.extend([kwargs["input"]] if list(argv) == ["ipset", "restore"] else [])
        return run(self, argv, *args, **kwargs)
    monkeypatch.setattr(Host, "run", counted)
    a, b = _parts(tmp_path, backend)
    host = Host(netns.name)
    apply(host, read_part(host, backend), a)
    creates = re.findall("^create .*", a.text["sets"], re.MULTILINE)
    assert len(restores) == 5 and len(restores[0].splitlines()) == len(creates) == 4
    assert all(line.startswith("create ") and not line.endswith(" -exist") for line in restores[0].splitlines())
    for staged in restores[1:]:
        named = {w[1] for w in map(str.split, staged.splitlines()) if w[0] == "create" and w[-1] == "-exist"}
        added = {w[1] for w in map(str.split, staged.splitlines()) if w[0] == "add"}
        assert added and named == added
    cut = [name for name in {w[1] for w in map(str.split, "".join(restores[1:]).splitlines()) if w[0] == "add"}
           if sum(f"\nadd {name} " in f"\n{staged}" for staged in restores[1:]) > 1]
    assert cut  # at least one set was shared among processes
    assert _members(read_part(host, backend).text["sets"]) == _members(a.text["sets"])
    before, sets = full_text(netns, backend), netns.run(["ipset", "save"]).stdout
    bad = b.text["sets"].replace("\nadd stk-bogons-net6 ", "\nadd stk-bogons-net6 no-such-net\nadd stk-bogons-net6 ", 1)
    restores.clear()
    with pytest.raises(KernelError, match="ipset restore"):
        apply(host, read_part(host, backend), OwnedPart(backend, {**b.text, "sets": bad}))
    assert len(restores) == 5
    assert full_text(netns, backend) == before and netns.run(["ipset", "save"]).stdout == sets


def _members(sets: str) -> set[tuple[str, object]]:
    """(set, member) of `add` lines, members as addresses (ipset spells ::ffff:0:0 its own way)."""
    return {(w[1], ipaddress.ip_network(w[2])) for w in map(str.split, sets.splitlines()) if w[0] == "add"}


def test_failing_nft_table_changes_nothing(netns, tmp_path):
    a, b = _parts(tmp_path, "nftables")
    host = Host(netns.name)
    apply(host, read_part(host, "nftables"), a)
    before = full_text(netns, "nftables")
    bad = OwnedPart("nftables", {"nft": b.text["nft"].replace("policy drop;", "policy drop; nosuchthing;", 1)})
    with pytest.raises(KernelError):
        apply(host, read_part(host, "nftables"), bad)
    assert full_text(netns, "nftables") == before


def test_journal_of_a_killed_transaction_is_undone(netns, tmp_path, monkeypatch):
    """A transaction killed between its IPv4 and IPv6 commits: IPv4 new, IPv6 old. The journal names
    the part it started from; recover() puts all of it back."""
    monkeypatch.setenv("STOCKADE_STATE_DIR", str(tmp_path / "state"))
    backend = "iptables-nft"
    a, b = _parts(tmp_path, backend)
    host, state = Host(netns.name), State.for_netns(netns.name)
    apply(host, read_part(host, backend), a)
    before, live = full_text(netns, backend), read_part(host, backend)
    gen = "a" if "-b " in netns.run(["ipset", "save"]).stdout else "b"  # the generation the next one gets
    netns.run(["ipset", "restore"], input=_physical(b.text["sets"], gen))  # steps 1 and 2 of the transaction
    netns.run(["iptables-nft-restore", "--noflush"], input=restore_text(live.text["4"], b.text["4"], gen))
    assert full_text(netns, backend) != before
    state.write("journal", {"from": live.to_json(), "to": b.to_json()})
    assert recover(host, state) and state.read("journal") is None
    assert full_text(netns, backend) == before


def test_legacy_table_committed_before_a_failing_one_is_put_back(netns, tmp_path):
    """iptables-legacy commits raw (the ftp helper hook) before filter: a failure in filter must not
    leave raw changed. (The raw table legacy registered on the way stays, empty, its policies ACCEPT:
    tables with no rule and no chain of their own are left out of the comparison.)"""
    backend = "iptables-legacy"
    a, _ = _parts(tmp_path, backend)
    ftp = tmp_path / "ftp.toml"
    ftp.write_text('[server]\ninterfaces = ["in0"]\n[[allow]]\nservice = "ftp"\n')
    b = desired(compile_policy(ftp), backend, {})
    assert "*raw" in b.text["4"]
    host = Host(netns.name)
    apply(host, read_part(host, backend), a)
    before = full_text(netns, backend)
    bad = OwnedPart(backend, {**b.text, "4": b.text["4"].replace("-A stk-in ", "-A stk-in -m nosuchmatch ", 1)})
    with pytest.raises(KernelError, match="iptables-legacy-restore"):
        apply(host, read_part(host, backend), bad)
    assert _rules(full_text(netns, backend)) == _rules(before)
    assert ":stk-" not in full_text(netns, backend).split("*filter")[0]


def _rules(text: str) -> str:
    tables = [t for t in text.split("COMMIT\n") if "-A " in t or re.search(r"^:\S+ (DROP|-) ", t, re.MULTILINE)]
    return "COMMIT\n".join(tables)
