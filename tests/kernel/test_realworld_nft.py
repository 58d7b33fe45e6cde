"""Real nftables files read through the real nft, then by stockade, without loss.

Each file of the nft store (collected from public repositories; see tests/realworld/SOURCES.md) is
loaded unchanged by kernel/nftfile.py (`nft -f` in a throwaway namespace, listed back with
`nft -j list ruleset`). A file nft 1.0.6 refuses there must come back as nft's own error, placed in the
file. For every other one:
- stockade's model holds every table, chain (hook, priority, policy), set and rule statement of the
  kernel's listing;
- without loss: every statement some probe packet reaches and the simulator cannot decide
  (`NftSimulator.undecided`) is listed here by why, and nothing else; each is outside what the packet
  model holds (DNAT, TCP option values, a connection's helper or count, ct status once NAT is in
  play), so a statement stockade misreads or drops turns this test red;
- packets run through it without an error.
A file written for a machine names its interfaces where nft needs them to exist (`iif`, `oif`): those
cases give the names, and the namespace gets a veth of each (nothing in the file changes).

The store is third-party data and is not committed: the tests read it from
$STOCKADE_REALWORLD_NFT, by default ../shared/corpus/realworld-nft, and skip saying so where it is absent.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from stockade.kernel.nftfile import NftFileError, nft_json_of_file, read_nft_file
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.semantics.nft import NftSimulator

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
STORE = Path(os.environ.get("STOCKADE_REALWORLD_NFT", SHARED / "corpus" / "realworld-nft"))
DNAT = "statement `dnat` is not modelled"
# case: (file, None if nft loads it else the start of nft's error, interfaces it needs, what is undecided)
CASES = {
    # hand-written servers and desktops
    "abdelgaid": ("nftables.conf", None, (), {}),
    "and3rsonls-slackware": ("nftables.conf", None, (), {}),
    "artfarm-zerofirewall": ("nftables.conf", None, (), {
        "expression `tcp option` is not modelled": 1,
        "statement {'ct count': {'val': 64, 'inv': True}} in a set element is not modelled": 2}),
    "benrb3": ("nftables.conf", None, (), {}),
    "debian-raspi3": ("nftables.conf", None, (), {}),
    "maxkellermann-uologin": ("nftables.conf", None, (), {}),
    "micun028": ("nftables.conf", None, (), {}),
    "micun028-configs": ("configs/nftables.conf", None, (), {}),
    "tahriyan-firewall": ("nftables.conf", None, (), {}),
    "vlad-portknock": ("nftables.conf", None, (), {}),
    "lausmirus": ("nftables.conf", None, ("wg0",), {}),
    "bdata-swarm": ("etc/nftables.conf", None, (), {}),
    "boldsuck-tor-relay": ("etc/nftables.conf", None, (), {}),
    "billyrayvalentine-unbound": ("files/nftables.conf", None, (), {}),
    "y3gi-docker-network": ("nftables.conf", None, (), {}),
    # routers
    "anssisaari-router": ("nftables.conf", None, (), {}),
    "ulexus-snat": ("nftables.conf", None, ("eth1",), {}),
    "martijnvds-router": ("etc/nftables.conf", None, (), {
        DNAT: 1, "ct status of this connection is not in the packet model": 1}),
    "razuuu-router": ("etc/nftables.conf", None, ("eth1", "eth2"), {}),
    "dhenkes-router": ("etc/nftables.conf", None, (), {}),
    "chr0mag-router": ("etc/nftables.conf", None, (), {}),
    "arfwilliamson-nat-ap": ("etc/nftables/nat-ap.nft", None, (), {}),
    # generated: firewalld (RHEL 8, with libvirt's iptables-nft tables) and Docker (iptables-nft)
    "insights-firewalld": ("ruleset.nft", None, (), {"ct helper of this connection is not in the packet model": 1}),
    "florianleveil-firewalld": ("ruleset.nft", None, (), {}),  # CentOS 8: `nft list table inet firewalld`
    "heiwmm-sbshell-docker": ("ruleset.nft", None, (), {DNAT: 1}),
    # refused by nft 1.0.6 itself
    "alexitru-minecraft": ("nftables.conf", "syntax error", (), {}),  # newer nft syntax than 1.0.6
    "svyatbeloz-all": ("nftables-all.conf", "syntax error", (), {}),
    "svyatbeloz-mc": ("nftables-mc.conf", "syntax error", (), {}),  # starts with a `sudo nft ...` line
    "svyatbeloz-web": ("nftables-web.conf", "syntax error", (), {}),
    "svyatbeloz-wg": ("nftables-wg.conf", "syntax error", (), {}),
    "bourgeoisbear-youtube": ("nftables.conf", "File not found", (), {}),  # includes a host file
    "lehaeivc": ("nftables.conf", "File not found", (), {}),  # includes /etc/nftables.d/...
    # Docker's own nftables back end: `type nat hook output priority dstnat`, which nft 1.0.6 refuses
    "moby-nftabler": ("daemon/libnetwork/drivers/bridge/internal/nftabler/testdata/TestNftabler/hairpin=true,"
                      "internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden",
                      "invalid priority expression value in this context", (), {}),
}
PACKETS = ["tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif eth0", "udp 192.0.2.5:5353 > 203.0.113.1:53 iif eth0",
           "icmp 192.0.2.5 > 203.0.113.1 type 8 iif eth0", "tcp [2001:db8::5]:40000 > [2001:db8:2::1]:443 SYN iif eth0",
           "tcp 192.0.2.5:40000 > 198.51.100.1:80 SYN iif eth0 oif eth1 hook FORWARD",
           "icmpv6 2001:db8::5 > 2001:db8:2::1 type 135 iif eth0", "udp 192.0.2.5:1 > 203.0.113.1:53 frag 3 iif lo"]
NO_STORE = pytest.mark.skipif(not STORE.is_dir(), reason=f"no nft store at {STORE}: set STOCKADE_REALWORLD_NFT "
                                                          "(see tests/realworld/SOURCES.md)")


def _listed(text: str) -> dict:
    """What the kernel's listing holds, keyed as stockade's model is."""
    out: dict = {"chains": {}, "rules": {}, "sets": {}}
    for item in json.loads(text)["nftables"]:
        (kind, obj), = item.items()
        if kind == "chain":
            out["chains"][(obj["family"], obj["table"], obj["name"])] = (obj.get("hook"), obj.get("prio"),
                                                                        obj.get("policy", "accept"))
        elif kind == "rule":
            out["rules"].setdefault((obj["family"], obj["table"], obj["chain"]), []).append(tuple(obj["expr"]))
        elif kind in ("set", "map"):
            out["sets"][(obj["family"], obj["table"], obj["name"])] = obj.get("elem", [])
    return out


@NO_STORE
@pytest.mark.parametrize("case", sorted(CASES))
def test_real_nft_file_read_without_loss(case, kernel_ok):
    name, refused, devices, lost = CASES[case]
    path = STORE / case / name
    if refused:
        with pytest.raises(NftFileError) as e:
            nft_json_of_file(str(path), devices)
        d = e.value.diagnostics[0]
        assert d.message.startswith(refused) and d.origin.file == str(path) and d.origin.line >= 1, str(e.value)
        return
    text = nft_json_of_file(str(path), devices)
    rs = read_nft_json(text, str(path), positions=False)
    kernel = _listed(text)
    mine = {"chains": {}, "rules": {}, "sets": {}}
    for t in rs.tables:
        for c in t.chains.values():
            mine["chains"][(t.family, t.name, c.name)] = (c.hook, c.prio, c.policy) if c.base else (None, None,
                                                                                                    "accept")
            if c.rules:
                mine["rules"][(t.family, t.name, c.name)] = [r.expr for r in c.rules]
        for s in t.sets.values():
            mine["sets"][(t.family, t.name, s.name)] = s.elements
    assert mine == kernel
    assert kernel["rules"], "a file whose listing has no rule tests nothing"
    sim = NftSimulator(rs)
    assert Counter(why for *_, why in sim.undecided()) == Counter(lost), sim.undecided()
    for spec in PACKETS:
        assert sim.run(from_short(spec)).verdict in ("ACCEPT", "DROP", "REJECT", "QUEUE", "UNKNOWN")



@NO_STORE
@pytest.mark.parametrize("case", sorted(c for c, (_, refused, *_) in CASES.items() if refused is None))
def test_real_nft_file_rules_named_by_their_line(case, kernel_ok):
    """Every rule of a real file is named by a place in it (or in a file it includes) that holds a statement:
    not a blank line, not a comment."""
    name, _, devices, _ = CASES[case]
    rs = read_nft_file(str(STORE / case / name), devices)
    rules = [r for t in rs.tables for c in t.chains.values() for r in c.rules]
    assert rules and all(r.origin is not None for r in rules), [r for r in rules if r.origin is None][:3]
    for r in rules:
        text = Path(r.origin.file).read_text().splitlines()[r.origin.line - 1][r.origin.col - 1:]
        assert text.strip() and not text.lstrip().startswith("#"), (r.origin, text)
