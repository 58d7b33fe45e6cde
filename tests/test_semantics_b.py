"""Packet semantics of group B's extensions: each match on packets that hit and miss it, each target's
effect, through the simulator as a ruleset would run them (kernel behaviour cited in the modules)."""
from __future__ import annotations

import ipaddress

import pytest

from stockade.extensions import REGISTRY
from stockade.extensions.nat import pick_addr
from stockade.extensions.string import kernel_upper
from stockade.model import Family, IPSet
from stockade.parse.save import read_save
from stockade.model.packet import SpecError, from_json, from_short
from stockade.semantics.simulate import Env, Simulator

V4 = {"src": "192.0.2.2", "dst": "192.0.2.1", "iif": "eth0"}
V6 = {"src": "2001:db8::2", "dst": "2001:db8::1", "iif": "eth0"}


def rules(*lines: str, table: str = "filter", family: Family = Family.IPV4, sets: tuple = ()) -> Simulator:
    b = read_save(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n", "t", family)
    errors = [str(d) for d in b.diagnostics if d.severity == "error"]
    assert not errors, errors
    rs = b.rulesets[family]
    for s in sets:
        rs.sets[s.name] = s
    return Simulator(rs)


def udp(**kw) -> dict:
    return {"proto": "udp", "sport": 5353, "dport": 53, **(V6 if ":" in kw.get("src", "") else V4), **kw}


def run(sim: Simulator, **spec):
    return sim.run(from_json(spec))


def verdict(sim: Simulator, **spec) -> str:
    return run(sim, **spec).verdict


def hits(sim: Simulator, **spec) -> list[int]:
    """The INPUT (or FORWARD) rules whose matches held, for rulesets of bare counting rules."""
    return [m["rule"] for m in run(sim, **spec).matched]


# ---- packet spec fields added for these matches ----

def test_spec_fields_and_short_form():
    p = from_short("tcp 192.0.2.2:4000 > 192.0.2.1:80 SYN mac 52:54:00:12:34:56 pkttype broadcast ctmark 0x10 "
                   "uid 1000 gid 100 dsttype local payload GET")
    assert p.src_mac == bytes.fromhex("525400123456") and p.pkttype == "broadcast" and p.ctmark == 16
    assert (p.uid, p.gid, p.dst_type, p.payload) == (1000, 100, "LOCAL", b"GET")
    assert p.length == 20 + 20 + 3  # headers plus payload when no length is given
    q = from_json(udp(src="2001:db8::2", dst="2001:db8::1", payload_hex="0001", frag_offset=2))
    assert q.length == 40 + 8 + 2 and q.payload == b"\0\1"  # a later fragment: IPv6 and fragment header only
    assert from_json(udp(groups=[4, 5], buffer_splits=[20])).groups == frozenset({4, 5})
    for bad in ({"src_mac": "52:54"}, {"pkttype": "bogus"}, {"dst_type": "HOME"}, {"payload": "x", "payload_hex": "00"},
                {"payload": "x", "length": 20}, {"groups": ["a"]}):
        with pytest.raises(SpecError):
            from_json(udp(**bad))
    with pytest.raises(SpecError):  # TCP with options has no fixed header length
        from_json({"proto": "tcp", "dport": 1, "tcp_options": [2], "payload": "x", **V4})


def test_link_class_and_arrival_ctmark():
    assert from_json(udp()).link_class == "unicast"
    assert from_json(udp(dst="224.0.0.5")).link_class == "multicast"
    assert from_json(udp(dst="255.255.255.255")).link_class == "broadcast"
    assert from_json(udp(dst="ff02::1", src="2001:db8::2")).link_class == "multicast"
    assert from_json(udp(dst="224.0.0.5", hook="OUTPUT")).link_class == "unicast"
    assert from_json(udp()).arrival_ctmark == 0
    assert from_json(udp(state="ESTABLISHED")).arrival_ctmark is None
    assert from_json(udp(state="ESTABLISHED", ctmark=7)).arrival_ctmark == 7
    assert from_json(udp(iif="lo")).arrival_ctmark is None


# ---- simple header matches ----

def test_iprange_edges_inversion_and_backwards_range():
    s = rules("-A INPUT -m iprange --src-range 192.0.2.2-192.0.2.10", "-A INPUT -m iprange ! --dst-range 10.0.0.1-10.0.0.5",
              "-A INPUT -m iprange --src-range 192.0.2.9-192.0.2.3")
    assert hits(s, **udp(src="192.0.2.2", dst="10.0.0.1")) == [1]
    assert hits(s, **udp(src="192.0.2.10", dst="10.0.0.6")) == [1, 2]
    assert hits(s, **udp(src="192.0.2.11", dst="10.0.0.5")) == []
    assert hits(s, **udp(src="192.0.2.1", dst="10.0.0.0")) == [2]
    s6 = rules("-A INPUT -m iprange --src-range 2001:db8::2-2001:db8::10 --dst-range ::1-::1", family=Family.IPV6)
    assert hits(s6, **udp(src="2001:db8::10", dst="::1")) == [1]
    assert hits(s6, **udp(src="2001:db8::11", dst="::1")) == []


def test_length_both_families():
    s = rules("-A INPUT -m length --length 100:200", "-A INPUT -m length ! --length 101")
    assert [hits(s, **udp(length=n)) for n in (99, 100, 101, 200, 201)] == [[2], [1, 2], [1], [1, 2], [2]]
    s6 = rules("-A INPUT -m length --length 100", family=Family.IPV6)
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", length=100)) == [1]  # 40 + payload length 60
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", length=99)) == []


def test_ttl_and_hl_see_forwarding_lower_it():
    s = rules("-A INPUT -m ttl --ttl-eq 64", "-A INPUT -m ttl --ttl-lt 10", "-A INPUT -m ttl ! --ttl-eq 5",
              "-A FORWARD -m ttl --ttl-eq 63", "-A FORWARD -m ttl --ttl-gt 63")
    assert hits(s, **udp(ttl=64)) == [1, 3]
    assert hits(s, **udp(ttl=9)) == [2, 3]
    assert hits(s, **udp(ttl=5)) == [2]
    assert hits(s, **udp(ttl=64, hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [1]  # FORWARD rule 1: 63
    assert hits(s, **udp(ttl=65, hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [2]
    gone = run(s, **udp(ttl=1, hook="FORWARD", dst="198.51.100.2", oif="eth1"))
    assert gone.verdict == "DROP" and gone.matched == [] and "time exceeded" in gone.reason
    s6 = rules("-A INPUT -m hl --hl-gt 254", "-A FORWARD -m hl --hl-eq 254", family=Family.IPV6)
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", ttl=255)) == [1]
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8:9::1", ttl=255, hook="FORWARD", oif="eth1")) == [1]


def test_tos_dscp_matches_and_targets():
    s = rules("-A INPUT -m tos --tos 0x10/0x3f", "-A INPUT -m dscp --dscp 0x2e", "-A INPUT -m dscp ! --dscp-class AF11")
    assert hits(s, **udp(tos=0x50)) == [1, 3]
    assert hits(s, **udp(tos=0xBB)) == [2, 3]
    assert hits(s, **udp(tos=0x28)) == []
    m = rules("-A PREROUTING -j DSCP --set-dscp-class EF", "-A PREROUTING -m dscp --dscp 46",
              "-A PREROUTING -m tos --tos 0xbb", "-A PREROUTING -j TOS --set-tos Minimize-Delay",
              "-A PREROUTING -m tos --tos 0x10", "-A PREROUTING -j TOS --xor-tos 0x01", "-A PREROUTING -m tos --tos 0x91",
              table="mangle")
    # DSCP keeps the ECN bits; a TOS name's mask 0x3f takes the low bits with it; --xor-tos keeps the rest
    assert hits(m, **udp(tos=0x03)) == [1, 2, 3, 4, 6, 7]
    assert hits(m, **udp(tos=0x00)) == [1, 2, 4, 6, 7]


def test_pkttype():
    s = rules("-A INPUT -m pkttype --pkt-type unicast", "-A INPUT -m pkttype --pkt-type broadcast",
              "-A INPUT -m pkttype ! --pkt-type multicast")
    assert hits(s, **udp()) == [1, 3]
    assert hits(s, **udp(dst="255.255.255.255")) == [2, 3]
    assert hits(s, **udp(dst="224.0.0.251")) == []
    assert hits(s, **udp(pkttype="broadcast")) == [2, 3]  # a subnet broadcast must be given
    assert hits(s, **udp(pkttype="loopback")) == [2, 3]  # own broadcast looped back
    assert hits(s, **udp(pkttype="loopback", dst="224.0.0.9")) == []
    s6 = rules("-A INPUT -m pkttype --pkt-type multicast", family=Family.IPV6)
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", pkttype="loopback")) == [1]


def test_mac():
    s = rules("-A INPUT -m mac --mac-source 52:54:00:12:34:56", "-A INPUT -m mac ! --mac-source 52:54:00:12:34:56")
    assert hits(s, **udp(src_mac="52:54:00:12:34:56")) == [1]
    assert hits(s, **udp(src_mac="02:00:00:00:00:01")) == [2]
    assert hits(s, **udp(iif="lo")) == []  # no Ethernet header: false even with `!`
    assert verdict(s, **udp()) == "UNKNOWN"


def test_addrtype():
    s = rules("-A INPUT -m addrtype --dst-type LOCAL", "-A INPUT -m addrtype --src-type BROADCAST",
              "-A INPUT -m addrtype ! --dst-type MULTICAST --src-type UNICAST")
    assert hits(s, **udp(dst_type="LOCAL", src_type="UNICAST")) == [1, 3]
    b = rules("-A INPUT -m addrtype --dst-type BROADCAST", "-A INPUT -m addrtype --dst-type MULTICAST")
    assert hits(b, **udp(dst="255.255.255.255", dst_type="LOCAL")) == [1]  # address-determined types win
    assert hits(b, **udp(dst="224.0.0.1")) == [2]
    assert verdict(s, **udp()) == "UNKNOWN"
    limited = rules("-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in", "-A INPUT -m addrtype --dst-type UNICAST --limit-iface-in")
    assert verdict(limited, **udp(dst_type="LOCAL")) == "UNKNOWN"
    assert hits(limited, **udp(dst="224.0.0.1")) == []
    assert hits(rules("-A INPUT -m addrtype --dst-type UNICAST --limit-iface-in"), **udp(dst_type="UNICAST")) == [1]
    s6 = rules("-A INPUT -m addrtype --dst-type MULTICAST", "-A INPUT -m addrtype --dst-type LOCAL,MULTICAST",
               "-A INPUT -m addrtype --src-type UNICAST", "-A INPUT -m addrtype --dst-type UNSPEC", family=Family.IPV6)
    # IPv6 lists are requirements: LOCAL,MULTICAST needs a multicast address the route lookup calls local
    assert hits(s6, **udp(src="2001:db8::2", dst="ff02::fb", dst_type="LOCAL")) == [1, 2, 3]
    assert hits(s6, **udp(src="::ffff:192.0.2.2", dst="2001:db8::1", dst_type="LOCAL")) == []  # mapped: not unicast
    assert verdict(s6, **udp(src="2001:db8::2", dst="2001:db8::1")) == "ACCEPT"  # decided by the address class


def test_owner():
    s = rules("-A OUTPUT -m owner --uid-owner 1000-1999", "-A OUTPUT -m owner ! --gid-owner 100",
              "-A OUTPUT -m owner --gid-owner 50 --suppl-groups", "-A OUTPUT -m owner ! --socket-exists")
    out = {"hook": "OUTPUT", "iif": None}
    assert hits(s, **udp(uid=1000, gid=100, groups=[50], **out)) == [1, 3]
    assert hits(s, **udp(uid=2000, gid=7, groups=[], **out)) == [2]
    assert verdict(s, **udp(uid=5, gid=50, **out)) == "ACCEPT"
    assert verdict(s, **udp(uid=5, gid=7, **out)) == "UNKNOWN"  # suppl groups needed, not given
    assert verdict(s, **udp(**out)) == "UNKNOWN"  # socket unknown
    p = rules("-A POSTROUTING -m owner ! --uid-owner 0", "-A POSTROUTING -m owner ! --uid-owner 0"
              " ! --gid-owner 1 --suppl-groups", "-A POSTROUTING -m owner --socket-exists", table="mangle")
    # a forwarded packet has no socket: only all-negated tests hold, and --suppl-groups spoils even that
    assert hits(p, **udp(hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [1]


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
    assert hits(s, **udp()) == everything  # checked against the kernel
    assert hits(s, **udp(mark=0x1)) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    # no conntrack entry (ICMP reply: INVALID): connmark never holds, CONNMARK does nothing
    assert hits(s, proto="icmp", icmp_type=0, **V4) == [1, 2, 3, 4, 5, 6, 9, 11, 12]


def test_connmark_unknown_for_later_packets_and_raw():
    s = rules("-A INPUT -m connmark --mark 0x1", "-A INPUT -j CONNMARK --restore-mark", "-A INPUT -m mark --mark 0x1")
    assert verdict(s, **udp(state="ESTABLISHED")) == "UNKNOWN"
    assert hits(s, **udp(state="ESTABLISHED", ctmark=1)) == [1, 2, 3]
    raw = rules("-A PREROUTING -m connmark --mark 0", "-A PREROUTING -j CONNMARK --set-mark 9", table="raw")
    assert hits(raw, **udp()) == [2]  # raw runs before conntrack: no entry yet
    assert verdict(raw, **udp(iif="lo")) == "UNKNOWN"


def test_mark_unknown_after_restore_from_unknown():
    s = rules("-A INPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff", "-A INPUT -m mark --mark 0")
    assert verdict(s, **udp(state="ESTABLISHED")) == "UNKNOWN"
    full = rules("-A INPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff", "-A INPUT -j MARK --set-mark 3",
                 "-A INPUT -m mark --mark 3")
    assert hits(full, **udp(state="ESTABLISHED")) == [1, 2, 3]  # setting every bit makes it known again


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
    ({"proto": "icmp", "icmp_type": 3, **V4}, "icmp-port-unreachable", "no ICMP error answers an ICMP error"),
    ({"proto": "tcp", "dport": 22, "tcp_flags": ["RST"], **V4}, "tcp-reset", "the packet is a RST"),
    ({"proto": "tcp", "dport": 22, "tcp_flags": ["SYN"], **V4}, "tcp-reset", "a TCP RST goes back to 192.0.2.2"),
])
def test_reject_says_what_goes_back(spec, with_, said):
    from stockade.extensions.reject import Reject
    env = Env(from_json(spec), None, {})
    assert REGISTRY.find("target", "REJECT", Family.IPV4).act(Reject(with_), env.pkt, env) == "REJECT"
    assert said in env.notes[0]


def test_notrack_and_ct():
    s = rules("-A PREROUTING -p udp --dport 53 -j NOTRACK", "-A PREROUTING -p tcp -j CT --notrack", table="raw")
    assert s.run(from_json(udp())).ctstate == "UNTRACKED"
    assert s.run(from_json({"proto": "tcp", "dport": 80, "tcp_flags": ["SYN"], **V4})).ctstate == "UNTRACKED"
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
               {"proto": "tcp", "dport": 80, **V4})
    assert env.pkt.dport == 3128 and env.pkt.addr("dst") == "192.0.2.1" and "first address of eth0" in env.notes[0]
    v6 = _act(nat("-A OUTPUT -p tcp -j REDIRECT", family=Family.IPV6), "OUTPUT",
              {"proto": "tcp", "dport": 80, "hook": "OUTPUT", **V6})
    assert v6.pkt.addr("dst") == "::1" and v6.pkt.dport == 80


# ---- -m string ----

HTTP = "GET /index.html HTTP/1.1"


@pytest.mark.parametrize("rule,spec,want", [
    ("--string \"GET /\" --algo kmp", {}, [1]),
    ("--string \"GET /\" --algo bm --from 28", {}, "UNKNOWN"),  # the buffer may be split anywhere after the IP header
    ("--string \"GET /\" --algo bm", {"buffer_splits": [20]}, [1]),
    ("--string \"GET /\" --algo bm", {"buffer_splits": [20, 42]}, []),  # crosses a split: bm misses it
    ("--string \"GET /\" --algo kmp", {"buffer_splits": [42]}, [1]),
    ("--string \"get /\" --algo kmp --icase", {}, [1]),
    ("--string \"get /\" --algo kmp", {}, "UNKNOWN"),  # could hide in the TCP sequence numbers
    ("--string \"get /\" --algo kmp --from 40", {}, []),
    ("! --string \"xyz\" --algo kmp --from 40", {}, [1]),
    ("--string \"HTTP\" --algo kmp --from 40 --to 59", {}, []),  # bytes 56-59: must lie wholly before --to
    ("--string \"HTTP\" --algo kmp --from 40 --to 60", {}, [1]),
    ("--hex-string |c0000202| --algo bm --to 16", {}, [1]),  # the source address, in the IP header
])
def test_string(rule, spec, want):
    s = rules(f"-A INPUT -m string {rule}")
    pkt = {"proto": "tcp", "dport": 80, "payload": HTTP, **V4, **spec}
    assert (verdict(s, **pkt) if want == "UNKNOWN" else hits(s, **pkt)) == want


def test_string_without_payload_and_kernel_case_folding():
    s = rules("-A INPUT -m string --string x --algo kmp")
    assert verdict(s, **udp()) == "UNKNOWN"
    assert kernel_upper(ord("a")) == ord("A") and kernel_upper(0xE9) == 0xC9 and kernel_upper(0xFF) == 0xDF
    s = rules("-A INPUT -m string --hex-string |df| --algo bm --icase --from 28")
    assert hits(s, **udp(payload_hex="bf", buffer_splits=[20])) == [1]  # toupper(0xdf) is 0xbf in the kernel
    assert verdict(s, **udp(payload_hex="ffbf", buffer_splits=[20])) == "UNKNOWN"  # bm may skip after 0xff


def test_string_ipv6_fragment_layout():
    s = rules("-A INPUT -m string --hex-string |0011| --algo kmp --from 48", family=Family.IPV6)
    assert hits(s, **udp(src="2001:db8::2", dst="2001:db8::1", frag_offset=3, payload_hex="0011")) == [1]


# ---- -m set ----

SETS = (
    IPSet("n4", "hash:net", (), ["192.0.2.0/24", "192.0.2.2 nomatch", "10.0.0.0/8"]),
    IPSet("ipp", "hash:ip,port", (), ["192.0.2.2,udp:53", "192.0.2.3,tcp:80", "192.0.2.4,icmp:8/0"]),
    IPSet("bp", "bitmap:port", ("range", "0-1024"), ["53", "80"]),
    IPSet("lst", "list:set", (), ["ipp", "n4"]),
    IPSet("nn", "hash:net,net", (), ["192.0.2.0/24,192.0.2.0/30", "192.0.2.2,192.0.2.0/24 nomatch"]),
    IPSet("ipn", "hash:ip,port,net", (), ["192.0.2.2,udp:53,192.0.2.0/24"]),
    IPSet("n6", "hash:net", ("family", "inet6"), ["2001:db8::/32"]),
    IPSet("hip", "hash:ip", ("netmask", "24"), ["198.51.100.7"]),
    IPSet("bip", "bitmap:ip", ("range", "192.0.2.0/24"), ["192.0.2.2-192.0.2.3"]),
    IPSet("mk", "hash:ip,mark", ("markmask", "0xff"), ["192.0.2.2,0x05"]),
    IPSet("odd", "hash:ip", ("bitmask", "255.255.0.0"), ["192.0.2.2"]),
)


def test_set_types_nomatch_and_dimensions():
    s = rules("-A INPUT -m set --match-set n4 src", "-A INPUT -m set --match-set n4 src --return-nomatch",
              "-A INPUT -m set ! --match-set n4 src", "-A INPUT -m set --match-set ipp src,dst",
              "-A INPUT -m set --match-set ipp src", "-A INPUT -m set --match-set bp dst",
              "-A INPUT -m set --match-set lst src,dst", "-A INPUT -m set --match-set nn src,dst",
              "-A INPUT -m set --match-set nn src,dst --return-nomatch", "-A INPUT -m set --match-set ipn src,dst,src",
              "-A INPUT -m set --match-set hip src", "-A INPUT -m set --match-set bip src",
              "-A INPUT -m set --match-set mk src,src", sets=SETS)
    # 192.0.2.2 is a nomatch element inside 192.0.2.0/24: the /32 wins; ipp needs two flags; nn tries
    # (/32, /30) then (/32, /24), which is the nomatch element
    assert hits(s, **udp(src="192.0.2.2")) == [2, 3, 4, 6, 7, 9, 10, 12]
    assert hits(s, **udp(src="192.0.2.3", dport=80)) == [1, 6, 7, 8, 12]  # bitmap:port takes TCP or UDP
    assert hits(s, **{"proto": "tcp", "dport": 80, **V4, "src": "192.0.2.3"}) == [1, 4, 6, 7, 8, 12]
    assert hits(s, **udp(src="198.51.100.9", dport=1025)) == [3, 11]  # outside the bitmap's range
    assert hits(s, **udp(src="192.0.2.2", mark=0x105)) == [2, 3, 4, 6, 7, 9, 10, 12, 13]
    assert hits(s, **{"proto": "icmp", "icmp_type": 8, **V4, "src": "192.0.2.4"}) == [1, 4, 7, 8]
    pre = rules("-A PREROUTING -m set --match-set n4 src", "-A PREROUTING -m set --match-set ipp src,dst",
                "-A PREROUTING -m set --match-set bip src", table="mangle", sets=SETS)
    assert hits(pre, **udp(src="192.0.2.3", frag_offset=2)) == [1, 3]  # no ports in a later fragment
    s6 = rules("-A INPUT -m set --match-set n6 src", "-A INPUT -m set --match-set n4 src", family=Family.IPV6,
               sets=SETS)
    assert hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1")) == [1]  # an inet set never matches IPv6


def test_set_unknown_contents():
    s = rules("-A INPUT -m set --match-set odd src", "-A INPUT -m set --match-set lst src,dst", sets=SETS)
    assert verdict(s, **udp()) == "UNKNOWN"  # bitmask is not modelled
    none = rules("-A INPUT -m set --match-set n4 src")  # the model was given no contents
    assert verdict(none, **udp()) == "UNKNOWN"
    macs = rules("-A INPUT -m set --match-set m src", sets=(IPSet("m", "hash:mac", (), ["52:54:00:12:34:56"]),))
    assert verdict(macs, **udp()) == "UNKNOWN"
    assert hits(macs, **udp(src_mac="52:54:00:12:34:56")) == [1]
    assert hits(macs, **udp(iif="lo")) == []


def test_set_counters_are_stateful():
    cnt = (IPSet("cnt", "hash:ip", ("counters",), ["192.0.2.2", "192.0.2.4 packets 5 bytes 100"]),)
    s = rules("-A INPUT -m set --match-set cnt src --packets-gt 1",
              "-A INPUT -m set --match-set cnt src ! --update-counters --bytes-lt 150",
              "-A INPUT -m set --match-set cnt src --packets-eq 3", sets=cnt)
    # each rule that looks at the element counts the packet first (unless told not to): as the kernel did
    assert [hits(s, **udp(length=40)) for _ in range(4)] == [[2], [1, 2], [1], [1]]
    assert [hits(s, **udp(src="192.0.2.4", length=40)) for _ in range(2)] == [[1, 2], [1]]
    fresh = rules("-A INPUT -m set --match-set cnt src --packets-gt 1", sets=cnt)
    assert hits(fresh, **udp(length=40)) == []  # a new simulator starts from the listed counters


def test_set_timeouts():
    to = (IPSet("to", "hash:ip", ("timeout", "100"), ["192.0.2.2", "192.0.2.3 timeout 0", "192.0.2.4 timeout 5"]),)
    s = rules("-A INPUT -m set --match-set to src", sets=to)
    assert hits(s, **udp(t=100.0)) == [1]
    assert hits(s, **udp(t=100.004)) == []  # one jiffy (HZ 250) past the timeout
    assert hits(s, **udp(src="192.0.2.3", t=1e6)) == [1]  # timeout 0: permanent
    assert hits(s, **udp(src="192.0.2.4", t=5.0)) == [1]
    assert hits(s, **udp(src="192.0.2.4", t=5.004)) == []


def test_list_set_subcounters():
    sets = (IPSet("a", "hash:ip", ("counters",), ["192.0.2.2"]), IPSet("l", "list:set", ("counters",), ["a"]))
    s = rules("-A INPUT -m set --match-set l src ! --update-subcounters", "-A INPUT -m set --match-set a src --packets-eq 1",
              "-A INPUT -m set --match-set l src --packets-eq 2", sets=sets)
    assert hits(s, **udp()) == [1, 2, 3]
