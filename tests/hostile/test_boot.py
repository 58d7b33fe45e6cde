"""Issue 14, High 2 and the boot test: for each back end, the admin's own rules (NAT, a VPN port,
a chain of theirs) are live and persisted the way the distribution does it; stockade applies,
the apply is confirmed and persisted; then a fresh namespace is brought up from the boot files
alone, in the order a Debian boot (netfilter-persistent: ipsets, rules.v4, rules.v6; or
nftables.service: nftables.conf) or a RHEL boot (ipset, iptables, ip6tables services; or
nftables.service with /etc/sysconfig/nftables.conf) loads them, or stockade's own unit where
neither exists. On a Docker host Docker's chains come afterwards, created the way libnetwork
creates them (DOCKER-USER only if missing, its RETURN appended, the FORWARD jump inserted first).
The result must equal the confirmed live ruleset, the admin's rules included."""
from __future__ import annotations

import pytest

from stockade.kernel.netns import Netns

from .kernelkit import full_text, policies, stockade_in

pytestmark = pytest.mark.kernel

ADMIN_V4 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 198.51.100.0/24 -o in0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:vpn - [0:0]
-A INPUT -p udp -m udp --dport 1194 -j vpn
-A vpn -s 203.0.113.0/24 -j ACCEPT
COMMIT
"""
ADMIN_V6 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 1194 -s 2001:db8:99::/48 -j ACCEPT
COMMIT
"""
ADMIN_NFT = """#!/usr/sbin/nft -f
flush ruleset
table inet admin {
	chain input {
		type filter hook input priority 10; policy accept;
		udp dport 1194 ip saddr 203.0.113.0/24 accept
	}
}
table ip nat {
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr 198.51.100.0/24 oifname "in0" masquerade
	}
}
"""

CASES = [  # (backend, distribution, docker)
    ("iptables-nft", "debian", False), ("iptables-nft", "rhel", False), ("iptables-legacy", "debian", False),
    ("iptables-nft", "unit", False), ("iptables-nft", "debian", True), ("iptables-nft", "rhel", True),
    ("nftables", "debian", False), ("nftables", "rhel", False), ("nftables", "unit", False),
]


def _docker_starts(ns, backend: str) -> None:
    """What dockerd's libnetwork does at start (firewall_linux.go arrangeUserFilterRule and the bridge
    driver): create DOCKER-USER unless it exists, append its RETURN unless there, insert the FORWARD jump."""
    ipt = f"iptables-{backend.split('-', 1)[1]}"
    if ns.run([ipt, "-t", "filter", "-n", "-L", "DOCKER-USER"], check=False).returncode != 0:
        ns.run([ipt, "-N", "DOCKER-USER"])
    if ns.run([ipt, "-C", "DOCKER-USER", "-j", "RETURN"], check=False).returncode != 0:
        ns.run([ipt, "-A", "DOCKER-USER", "-j", "RETURN"])
    if ns.run([ipt, "-C", "FORWARD", "-j", "DOCKER-USER"], check=False).returncode != 0:
        ns.run([ipt, "-I", "FORWARD", "-j", "DOCKER-USER"])


def _admin_setup(ns, root, backend: str, distro: str) -> None:
    """The admin's own rules, live and persisted as their distribution's tools persist them (where
    no tool persists anything, stockade's unit is all that loads: no admin rules then)."""
    if distro == "unit":
        return
    if backend == "nftables":
        ns.run(["nft", "-f", "-"], input=ADMIN_NFT)
        conf = {"debian": "etc/nftables.conf", "rhel": "etc/sysconfig/nftables.conf"}.get(distro)
        if conf:
            (root / conf).parent.mkdir(parents=True, exist_ok=True)
            (root / conf).write_text(ADMIN_NFT)
        return
    kind = backend.split("-", 1)[1]
    ns.run([f"iptables-{kind}-restore"], input=ADMIN_V4)
    ns.run([f"ip6tables-{kind}-restore"], input=ADMIN_V6)
    files = {"debian": ("etc/iptables/rules.v4", "etc/iptables/rules.v6"),
             "rhel": ("etc/sysconfig/iptables", "etc/sysconfig/ip6tables")}.get(distro)
    if distro == "rhel":
        (root / "etc/sysconfig").mkdir(parents=True, exist_ok=True)
        (root / "etc/sysconfig/iptables-config").write_text('IPTABLES_SAVE_ON_STOP="no"\n')
    if files:
        for f, text in zip(files, (ADMIN_V4, ADMIN_V6)):
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_text(text)


def _boot(ns, root, backend: str, distro: str) -> None:
    """Load the boot files into a fresh namespace as the distribution's units do, each must load."""
    if backend == "nftables":
        conf = {"debian": "etc/nftables.conf", "rhel": "etc/sysconfig/nftables.conf"}.get(distro,
                                                                                          "etc/stockade/stockade.nft")
        text = (root / conf).read_text().replace('include "/etc/', f'include "{root}/etc/')
        ns.run(["nft", "-f", "-"], input=text)
        return
    kind = backend.split("-", 1)[1]
    d, noflush = {"debian": ("etc/iptables", []), "rhel": ("etc/sysconfig", []),
                  "unit": ("etc/stockade", ["--noflush"])}[distro]
    names = {"debian": ("ipsets", "rules.v4", "rules.v6"), "rhel": ("ipset", "iptables", "ip6tables"),
             "unit": ("ipsets", "rules.v4", "rules.v6")}[distro]
    ns.run(["ipset", "restore"], input=(root / d / names[0]).read_text())
    ns.run([f"iptables-{kind}-restore", *noflush], input=(root / d / names[1]).read_text())
    ns.run([f"ip6tables-{kind}-restore", *noflush], input=(root / d / names[2]).read_text())


@pytest.mark.parametrize(("backend", "distro", "docker"), CASES)
def test_boot_from_the_persisted_files(netns, tmp_path, backend, distro, docker):
    old, _ = policies(tmp_path)
    st, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    _admin_setup(netns, root, backend, distro)
    if docker:
        _docker_starts(netns, backend)
    a = stockade_in(None, ["apply", str(old), "--netns", netns.name, "--confirm-timeout", "60",
                           "--backend", backend], st)
    assert a.returncode == 0, a.stderr
    assert stockade_in(None, ["confirm", "--netns", netns.name], st).returncode == 0
    p = stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st)
    assert p.returncode == 0, p.stderr
    confirmed = full_text(netns, backend)
    assert ("1194" in confirmed) == (distro != "unit") and ("stk-" in confirmed or "stockade" in confirmed)
    with Netns() as booted:
        _boot(booted, root, backend, distro)
        if docker:
            _docker_starts(booted, backend)
        assert full_text(booted, backend) == confirmed
