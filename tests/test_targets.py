"""Targets through the simulator: marks and connmarks, REJECT/LOG/NFLOG/TRACE/CT/NOTRACK, and NAT
(address and port choice as the kernel makes it, what filter sees after DNAT)."""
from __future__ import annotations

import ipaddress

import pytest

from stockade.extensions import REGISTRY
from stockade.extensions.nat import pick_addr
from stockade.model import Family
from stockade.model.packet import from_json
from stockade.semantics.simulate import Env, Simulator
from tests.simulation import PEERS_V4, PEERS_V6, rule_hits, rules, run, udp, verdict

# ---- marks ----

def test_mark_and_connmark_chain_together():
    s = rules("-A INPUT -m mark --mark 0", "-A INPUT -j MARK --set-xmark 0x5/0xff", "-A INPUT -m mark --mark 0x5/0xf",
              "-A INPUT -j MARK --or-mark 0x100", "-A INPUT -m mark --mark 0x105",
              "-A INPUT -j CONNMARK --save-mark --mask 0xff", "-A INPUT -m connmark --mark 0x5",
              "-A INPUT -m connmark ! --mark 0x5",
              "-A INPUT -j CONNMARK --set-xmark 0x7/0x7 --left-shift-mark 4", "-A INPUT -m connmark --mark 0x70",
              "-A INPUT -j MARK --set-mark 0",
              "-A INPUT -j CONNMARK --restore-mark --ctmask 0xf0 --nfmask 0xf --right-shift-mark 4",
              "-A INPUT -m mark --mark 0x7")
    everything = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    assert rule_hits(s, **udp()) == everything  # checked against the kernel
    assert rule_hits(s, **udp(mark=0x1)) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    # no conntrack entry (ICMP reply: INVALID): connmark never holds, CONNMARK does nothing
    assert rule_hits(s, proto="icmp", icmp_type=0, **PEERS_V4) == [1, 2, 3, 4, 5, 6, 9, 11, 12]


def test_connmark_unknown_for_later_packets_and_raw():
    s = rules("-A INPUT -m connmark --mark 0x1", "-A INPUT -j CONNMARK --restore-mark", "-A INPUT -m mark --mark 0x1")
    assert verdict(s, **udp(state="ESTABLISHED")) == "UNKNOWN"
    assert rule_hits(s, **udp(state="ESTABLISHED", ctmark=1)) == [1, 2, 3]
    raw = rules("-A PREROUTING -m connmark --mark 0", "-A PREROUTING -j CONNMARK --set-mark 9", table="raw")
    assert rule_hits(raw, **udp()) == [2]  # raw runs before conntrack: no entry yet
    assert verdict(raw, **udp(iif="lo")) == "UNKNOWN"


def test_mark_unknown_after_restore_from_unknown():
    s = rules("-A INPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff", "-A INPUT -m mark --mark 0")
    assert verdict(s, **udp(state="ESTABLISHED")) == "UNKNOWN"
    full = rules("-A INPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff", "-A INPUT -j MARK --set-mark 3",
                 "-A INPUT -m mark --mark 3")
    assert rule_hits(full, **udp(state="ESTABLISHED")) == [1, 2, 3]  # setting every bit makes it known again


# ---- terminating and side-effect targets ----

def test_reject_log_nflog_trace_notes():
    s = rules("-A INPUT -j LOG --log-prefix \"in: \"", "-A INPUT -j NFLOG --nflog-group 3", "-A INPUT -p udp -j REJECT")
    res = run(s, **udp())
    assert res.verdict == "REJECT" and [m["rule"] for m in res.matched] == [1, 2, 3]
    env = Env(from_json(udp()), None, {})
    REGISTRY.find("target", "LOG", Family.IPV4).act(s.rs.tables["filter"].chains["INPUT"].rules[0].target.data,
                                                   env.pkt, env)
    assert env.notes == ['LOG level 4 prefix "in: "']
    t = rules("-A PREROUTING -j TRACE", table="raw")
    assert verdict(t, **udp()) == "ACCEPT"


@pytest.mark.parametrize("spec,with_,said", [
    (udp(), "icmp-port-unreachable", "an ICMP icmp-port-unreachable goes back to 192.0.2.2"),
    (udp(dst="255.255.255.255"), "icmp-port-unreachable", "broadcast/multicast"),
    (udp(frag_offset=3), "icmp-port-unreachable", "non-first fragment"),
    ({"proto": "icmp", "icmp_type": 3, **PEERS_V4}, "icmp-port-unreachable", "no ICMP error answers an ICMP error"),
    ({"proto": "tcp", "dport": 22, "tcp_flags": ["RST"], **PEERS_V4}, "tcp-reset", "the packet is a RST"),
    ({"proto": "tcp", "dport": 22, "tcp_flags": ["SYN"], **PEERS_V4}, "tcp-reset", "a TCP RST goes back to 192.0.2.2"),
])
def test_reject_says_what_goes_back(spec, with_, said):
    from stockade.extensions.reject import Reject
    env = Env(from_json(spec), None, {})
    assert REGISTRY.find("target", "REJECT", Family.IPV4).act(Reject(with_), env.pkt, env) == "REJECT"
    assert said in env.notes[0]


def test_notrack_and_ct():
    s = rules("-A PREROUTING -p udp --dport 53 -j NOTRACK", "-A PREROUTING -p tcp -j CT --notrack", table="raw")
    assert s.run(from_json(udp())).ctstate == "UNTRACKED"
    assert s.run(from_json({"proto": "tcp", "dport": 80, "tcp_flags": ["SYN"], **PEERS_V4})).ctstate == "UNTRACKED"
    assert s.run(from_json(udp(dport=54))).ctstate == "NEW"
    # a packet on lo keeps what its output path attached
    assert s.run(from_json(udp(iif="lo", src="127.0.0.1", dst="127.0.0.1"))).ctstate == "NEW"
    # a template from an earlier CT rule makes a later NOTRACK do nothing
    z = rules("-A PREROUTING -j CT --zone 1", "-A PREROUTING -j NOTRACK", table="raw")
    assert z.run(from_json(udp())).ctstate == "NEW"


# ---- NAT ----

@pytest.mark.parametrize("src,dst,first,last,which,persistent,chosen", [
    # measured in a namespace (conntrack -L after DNAT/SNAT on a fresh table)
    ("192.0.2.1", "198.51.100.7", "10.9.0.1", "10.9.0.200", "dst", False, "10.9.0.200"),
    ("192.0.2.1", "198.51.100.8", "10.9.0.1", "10.9.0.200", "dst", False, "10.9.0.99"),
    ("192.0.2.1", "8.8.8.8", "10.9.0.1", "10.9.0.200", "dst", False, "10.9.0.65"),
    ("192.0.2.1", "8.8.8.8", "10.9.0.1", "10.9.0.200", "dst", True, "10.9.0.108"),
    ("192.0.2.1", "8.8.8.8", "192.0.2.10", "192.0.2.250", "src", False, "192.0.2.87"),
    ("192.0.2.3", "198.51.100.7", "10.1.0.0", "10.1.255.255", "src", False, "10.1.204.66"),
    ("2001:db8::1", "2001:db8:9::8", "2001:db8:5::1", "2001:db8:6::ff", "dst", False,
     "2001:db8:5:ab80:2bd4:f978:532d:2d51"),
    ("2001:db8::1", "2001:4860::8888", "2001:db8:5::1", "2001:db8:5::ffff:ffff", "dst", False,
     "2001:db8:5::69c9:b244"),
])
def test_nat_address_choice_matches_the_kernel(src, dst, first, last, which, persistent, chosen):
    pkt = from_json({"proto": "udp", "src": src, "dst": dst, "dport": 53})
    got = pick_addr(pkt, int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last)), which, persistent)
    assert ipaddress.ip_address(got) == ipaddress.ip_address(chosen)


def nat(*lines: str, family: Family = Family.IPV4) -> Simulator:
    return rules(*lines, table="nat", family=family)


def _act(sim: Simulator, chain: str, spec: dict, table: str = "nat", rule: int = 1) -> Env:
    """Run one rule's target on a fresh packet and return the environment it changed."""
    env = Env(from_json(spec), "NEW", {})
    target = sim.rs.tables[table].chains[chain].rules[rule - 1].target
    REGISTRY.find("target", target.name, sim.rs.family).act(target.data, env.pkt, env)
    return env


def test_dnat_rewrites_what_filter_sees():
    s = nat("-A PREROUTING -p udp --dport 53 -j DNAT --to-destination 10.9.0.1-10.9.0.200")
    s.rs.tables.update(rules("-A FORWARD -d 10.9.0.200 -j DROP").rs.tables)
    assert verdict(s, **udp(src="192.0.2.1", dst="198.51.100.7", hook="FORWARD", oif="eth1")) == "DROP"


@pytest.mark.parametrize("dport,rule,port", [
    (1500, "--to-destination 10.9.0.1:1000-2000", 1500),  # in the range: kept
    (3000, "--to-destination 10.9.0.1:1000-2000", 1000),  # else the first one (measured)
    (3001, "--to-destination 10.9.0.1:1000-2000/2900", 1101),  # shifted by its offset from the base
])
def test_dnat_ports(dport, rule, port):
    env = _act(nat(f"-A OUTPUT -p udp -j DNAT {rule}"), "OUTPUT", udp(dport=dport, hook="OUTPUT", iif=None))
    assert (env.pkt.addr("dst"), env.pkt.dport) == ("10.9.0.1", port)


def test_redirect_and_random_ports():
    env = _act(nat("-A OUTPUT -p udp -j REDIRECT --to-ports 7000-8000"), "OUTPUT", udp(hook="OUTPUT", iif=None))
    assert (env.pkt.addr("dst"), env.pkt.dport) == ("127.0.0.1", 7000)
    random = nat("-A OUTPUT -p udp -j DNAT --to-destination 10.9.0.1:1000-2000 --random")
    assert verdict(random, **udp(hook="OUTPUT", iif=None)) == "UNKNOWN"  # later rules would read a random port
    one = nat("-A OUTPUT -p udp -j DNAT --to-destination 10.9.0.1:1000 --random")
    assert verdict(one, **udp(hook="OUTPUT", iif=None)) == "ACCEPT"


def test_snat_masquerade_keep_or_note():
    kept = _act(nat("-A POSTROUTING -j SNAT --to-source 192.0.2.10-192.0.2.250"), "POSTROUTING", udp(src="192.0.2.77"))
    assert kept.pkt.addr("src") == "192.0.2.77" and "unchanged" in kept.notes[0]
    moved = _act(nat("-A POSTROUTING -p udp -j SNAT --to-source 192.0.2.10-192.0.2.250:2000-3000"), "POSTROUTING",
                 udp(src="192.0.2.1", dst="8.8.8.8", sport=2500))
    assert (moved.pkt.addr("src"), moved.pkt.sport) == ("192.0.2.87", 2500)
    random_port = _act(nat("-A POSTROUTING -p udp -j SNAT --to-source 192.0.2.9:2000-3000"), "POSTROUTING",
                       udp(sport=40000))
    assert random_port.pkt.addr("src") == "192.0.2.9" and "random" in random_port.notes[0]
    masq = _act(nat("-A POSTROUTING -j MASQUERADE"), "POSTROUTING", udp(oif="eth1", hook="FORWARD"))
    assert masq.pkt.addr("src") == "192.0.2.2" and "primary address of eth1" in masq.notes[0]
    assert masq.pkt.sport == 5353


def test_redirect_from_prerouting_notes_the_unknown_address():
    env = _act(nat("-A PREROUTING -p tcp -j REDIRECT --to-ports 3128"), "PREROUTING",
               {"proto": "tcp", "dport": 80, **PEERS_V4})
    assert env.pkt.dport == 3128 and env.pkt.addr("dst") == "192.0.2.1" and "first address of eth0" in env.notes[0]
    v6 = _act(nat("-A OUTPUT -p tcp -j REDIRECT", family=Family.IPV6), "OUTPUT",
              {"proto": "tcp", "dport": 80, "hook": "OUTPUT", **PEERS_V6})
    assert v6.pkt.addr("dst") == "::1" and v6.pkt.dport == 80
