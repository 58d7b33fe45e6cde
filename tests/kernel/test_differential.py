"""The simulator against the real kernel, rule by rule.

A lab.differential.Probe loads a filter table into a server namespace, sends real
frames from a client namespace and reads which rule counters and chain policies
moved. The simulator, given the same ruleset and packet, must name exactly those
rules (with multiplicity), the same policy, the same verdict and, where observed,
the same conntrack state.

Random part: >= 100 rulesets and 5,000 packets (seed fixed under CI=true, random
otherwise, always printed; STOCKADE_SEED overrides it). Hand-written part: the
first-packet conntrack states, fragments and martian sources, one test each.
"""
from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import pytest

from stockade.lab.counters import moved, read_counters
from stockade.lab.differential import Probe, disagreements, expectation
from stockade.lab.inject import frame, packet_spec
from stockade.model import Family
from stockade.model.packet import Packet, from_json
from stockade.parse.save import read_save
from stockade.semantics.simulate import Simulator

from .conftest import lasting_probe
from .rulegen import Features, PacketGen, RulesetGen, has_semantics

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (20250101 if CI else random.randrange(1, 2**31)))
# CI checks a fixed sample (its seed is fixed) of half the size, as test_nft_differential does.
RULESETS = int(os.environ.get("STOCKADE_DIFF_RULESETS", "50" if CI else "100"))
PACKETS = int(os.environ.get("STOCKADE_DIFF_PACKETS", "50"))  # per ruleset
SHOWN = 8  # disagreements printed in full (STOCKADE_DIFF_REPORT=FILE writes them all)

FIXED_COMBINED_PORTS = (1, 8, 11)  # iptables-nft installs `! --sport P ! --dport Q` right from here on

@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=True) as p:
        yield p


def model(text: str, family: Family, conntrack_on: bool = False):
    """The ruleset as stockade reads it, and a simulator for it.

    conntrack_on: the kernel namespace tracks connections because of rules outside
    the model (the probe's observers), so the simulator must assume it too.
    """
    b = read_save(text, "generated", family)
    errors = [str(d) for d in b.diagnostics if d.severity == "error"]
    assert not errors, f"stockade refuses a ruleset the kernel took:\n{text}\n" + "\n".join(errors)
    rs = b.rulesets[family]
    sim = Simulator(rs)
    if conntrack_on:
        sim.conntrack = True
    return rs, sim


def describe(pkt: Packet) -> str:
    spec = packet_spec(pkt)
    spec.update(hook=pkt.hook, iif=pkt.iif, **({"oif": pkt.oif} if pkt.oif else {}))
    return json.dumps(spec)


def compare(probe: Probe, rs, sim: Simulator, pkt: Packet, ct_observed: bool) -> tuple[list[str], dict, bool]:
    """(disagreements, both answers, whether the simulator abstained) for one packet.

    The simulator may answer UNKNOWN only where the kernel's answer depends on bytes the
    packet model does not carry: header matches on a non-first fragment. Even then the
    rules it saw match before that point must have counted, and the conntrack state agree.
    """
    obs = probe.send(pkt)
    res = sim.run(pkt)
    answers = {"simulator": {k: v for k, v in res.to_json().items() if k != "trace"} | {"reason": res.reason},
               "kernel": {"rules": sorted(obs.filter.rules.items()), "policies": sorted(obs.filter.policies.items()),
                          "passed": obs.passed, "ctstate": obs.ctstate}}
    if res.verdict != "UNKNOWN":
        return disagreements(expectation(res, rs, pkt.hook), obs, ct_observed), answers, False
    if not pkt.frag_offset:
        return [f"undecided: the simulator cannot decide: {res.reason}"], answers, True
    exp = expectation(res, rs, pkt.hook)
    diffs = []
    if missing := exp.rules - obs.filter.rules:
        diffs.append(f"rules: the simulator saw {dict(missing)} match before it could not decide; the kernel did not")
    if ct_observed and exp.ctstate != obs.ctstate:
        diffs.append(f"ctstate: simulator {exp.ctstate}, kernel {obs.ctstate}")
    return diffs, answers, True


def test_random_rulesets_agree_with_the_kernel(probe, capsys):
    rng = random.Random(SEED)
    feats = {fam: Features.detect(fam) for fam in Family}
    bug = probe.iptables_version() < FIXED_COMBINED_PORTS
    failures: list[str] = []
    kinds: Counter = Counter()
    packets = abstained = 0
    start = time.monotonic()
    for i in range(RULESETS):
        fam = Family.IPV4 if i % 2 == 0 else Family.IPV6
        gen = RulesetGen(rng, fam, feats[fam], combined_ports_bug=bug).ruleset()
        observe_ct = rng.random() < 0.5
        probe.load(fam, gen.text, observe_ct=observe_ct)
        rs, sim = model(gen.text, fam, conntrack_on=observe_ct)
        assert sim.conntrack == (gen.uses_ct or observe_ct)
        pg = PacketGen(rng, gen)
        for _ in range(PACKETS):
            pkt = pg.packet()
            diffs, answers, unknown = compare(probe, rs, sim, pkt, observe_ct)
            packets += 1
            abstained += unknown
            if diffs:
                kinds.update(d.split(":")[0] for d in diffs)
                failures.append(f"--- ruleset {i} (IPv{int(fam)}, conntrack observers {observe_ct}):\n"
                                f"{gen.text}packet: {describe(pkt)}\n" + "\n".join(diffs) +
                                f"\nsimulator: {json.dumps(answers['simulator'])}\n"
                                f"kernel:    {json.dumps(answers['kernel'])}")
    elapsed = time.monotonic() - start
    if os.environ.get("STOCKADE_DIFF_REPORT"):  # every disagreement, for study
        with open(os.environ["STOCKADE_DIFF_REPORT"], "w") as f:
            f.write("\n\n".join(failures))
    with capsys.disabled():
        print(f"\ndifferential: seed {SEED}, {RULESETS} rulesets, {packets} packets ({abstained} undecidable "
              f"fragments), {len(failures)} disagreements, {elapsed:.1f}s; extension semantics in use: "
              f"IPv4 {feats[Family.IPV4].names()}, IPv6 {feats[Family.IPV6].names()}")
    assert not failures, (f"seed {SEED}: {len(failures)} of {packets} packets disagree ({dict(kinds)}); "
                          f"first {min(SHOWN, len(failures))}:\n\n" + "\n\n".join(failures[:SHOWN]))


# --- hand-written conntrack cases -------------------------------------------------------------

STATE_ORDER = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
STATE_RULES = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
               + "".join(f"-A INPUT -m state --state {s}\n" for s in STATE_ORDER)
               + "".join(f"-A FORWARD -m state --state {s}\n" for s in STATE_ORDER) + "{extra}COMMIT\n")
V4 = {"src": "192.0.2.9", "dst": "203.0.113.5"}
V6 = {"src": "2001:db8::9", "dst": "2001:db8:2::5"}


def tcp(flags, **kw):
    return {"proto": "tcp", "sport": 40000, "dport": 22, "tcp_flags": flags, **V4, **kw}


FIRST_PACKETS = {
    "syn-new": (tcp(["SYN"]), "NEW"),
    "lone-ack-new-loose": (tcp(["ACK"]), "NEW"),
    "null-invalid": (tcp([]), "INVALID"),
    "xmas-invalid": (tcp(["FIN", "PSH", "URG"]), "INVALID"),
    "syn-fin-invalid": (tcp(["SYN", "FIN"]), "INVALID"),
    "lone-rst-invalid": (tcp(["RST"]), "INVALID"),
    "synack-without-connection-invalid": (tcp(["SYN", "ACK"]), "INVALID"),
    "finack-invalid": (tcp(["FIN", "ACK"]), "INVALID"),
    "icmp-echo-reply-without-request-invalid": ({"proto": "icmp", "icmp_type": 0, **V4}, "INVALID"),
    "icmp-echo-request-new": ({"proto": "icmp", "icmp_type": 8, **V4}, "NEW"),
    "icmp-dest-unreachable-quoting-nothing-invalid": ({"proto": "icmp", "icmp_type": 3, "icmp_code": 3, **V4},
                                                      "INVALID"),
    "icmpv6-neighbour-solicitation-untracked": ({"proto": "icmpv6", "icmp_type": 135, "src": "2001:db8::9",
                                                 "dst": "2001:db8::1", "ttl": 255}, "UNTRACKED"),
    "icmpv6-echo-request-new": ({"proto": "icmpv6", "icmp_type": 128, **V6}, "NEW"),
    "icmpv6-echo-reply-invalid": ({"proto": "icmpv6", "icmp_type": 129, **V6}, "INVALID"),
    "ipv6-syn-new": (tcp(["SYN"], **V6), "NEW"),
    "udp-new": ({"proto": "udp", "sport": 5353, "dport": 53, **V4}, "NEW"),
    "forwarded-syn-new": (tcp(["SYN"], dst="198.51.100.7", hook="FORWARD", oif="out0"), "NEW"),
}


@pytest.mark.parametrize("name", FIRST_PACKETS)
def test_first_packet_state(probe, name):
    spec, state = FIRST_PACKETS[name]
    pkt = from_json({"iif": "in0", **spec})
    text = STATE_RULES.format(extra="")
    probe.load(pkt.family, text)
    obs = probe.send(pkt)
    kernel = [STATE_ORDER[n - 1] for (_, chain, n) in obs.filter.rules if chain == pkt.hook]
    assert kernel == [state], f"the kernel saw {kernel}, not {state}: the test's premise is wrong"
    rs, sim = model(text, pkt.family)
    res = sim.run(pkt)
    assert res.ctstate == state, f"simulator says {res.ctstate}, kernel {state}"
    if has_semantics("match", "state", pkt.family):
        assert disagreements(expectation(res, rs, pkt.hook), obs, False) == []


@pytest.mark.parametrize("hook", ["INPUT", "FORWARD"])
@pytest.mark.parametrize("offset,more", [(0, True), (3, True), (185, False)])
def test_fragment_never_reaches_filter_with_conntrack(probe, hook, offset, more):
    text = STATE_RULES.format(extra=f"-I {hook} -f\n")
    spec = {"proto": "udp", "sport": 5353, "dport": 53, "frag_offset": offset, "more_fragments": more,
            "length": 100, "iif": "in0", "hook": hook, **V4}
    if hook == "FORWARD":
        spec.update(dst="198.51.100.7", oif="out0")
    pkt = from_json(spec)
    probe.load(pkt.family, text)
    obs = probe.send(pkt)
    assert not obs.filter.rules and not obs.filter.policies, f"the kernel counted it: {obs}"
    rs, sim = model(text, pkt.family)
    res = sim.run(pkt)
    assert res.verdict == "DROP" and res.matched == [], res.to_json()
    assert disagreements(expectation(res, rs, pkt.hook), obs, False) == []


MARTIANS = ["127.0.0.1", "0.0.0.0", "224.0.0.5", "255.255.255.255", "::1", "ff02::1"]
# Not martian on Linux >= 5.3 (0.0.0.0/8 beyond 0.0.0.0 itself) nor ever (class E): routed like any source.
ROUTED = ["0.0.0.1", "0.255.255.255", "240.0.0.1"]


def _udp_from(src: str, hook: str = "INPUT") -> Packet:
    v6 = ":" in src
    dst = ("2001:db8:1::7" if v6 else "198.51.100.7") if hook == "FORWARD" else ("2001:db8:2::5" if v6 else
                                                                                "203.0.113.5")
    return from_json({"proto": "udp", "sport": 5353, "dport": 53, "src": src, "dst": dst, "iif": "in0",
                      "hook": hook, **({"oif": "out0"} if hook == "FORWARD" else {})})


COUNT_ALL = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT\n-A FORWARD\nCOMMIT\n"


@pytest.mark.parametrize("src", MARTIANS + ROUTED)
def test_martian_source_never_reaches_input(probe, src):
    pkt = _udp_from(src)
    probe.load(pkt.family, COUNT_ALL, observe_ct=True)
    obs = probe.send(pkt)
    if src in MARTIANS:
        assert not obs.filter.rules and not obs.filter.policies and not obs.passed, f"the kernel counted it: {obs}"
    else:
        assert obs.filter.rules == Counter({("filter", "INPUT", 1): 1}), f"the kernel did not take {src}: {obs}"
    rs, sim = model(COUNT_ALL, pkt.family, conntrack_on=True)
    res = sim.run(pkt)
    assert ("martian" in (res.reason or "")) == (src in MARTIANS), res.to_json()
    assert disagreements(expectation(res, rs, pkt.hook), obs, True) == [], res.to_json()


@pytest.mark.parametrize("src", ["::", "fe80::1"])
def test_ipv6_sources_taken_but_never_forwarded(probe, src):
    for hook in ("INPUT", "FORWARD"):
        pkt = _udp_from(src, hook)
        probe.load(pkt.family, COUNT_ALL, observe_ct=True)
        obs = probe.send(pkt)
        assert bool(obs.filter.rules) == (hook == "INPUT"), f"{hook}: {obs}"
        rs, sim = model(COUNT_ALL, pkt.family, conntrack_on=True)
        res = sim.run(pkt)
        assert disagreements(expectation(res, rs, pkt.hook), obs, True) == [], res.to_json()


def test_inverted_single_ports_as_iptables_nft_installs_them(probe):
    """`! --sport 1 ! --dport 443` means neither port is that one, as xt_tcpudp and iptables-legacy
    implement it. iptables-nft before 1.8.11 installs it as one 4-byte compare, (sport, dport) !=
    (1, 443), which matches when either port differs (fixed upstream in 2024). stockade simulates what
    the rule means; on an affected iptables this test shows the kernel doing otherwise."""
    buggy = probe.iptables_version() < FIXED_COMBINED_PORTS
    for proto in ("tcp", "udp"):
        text = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                f"-A INPUT -p {proto} -m {proto} ! --sport 1 ! --dport 443\nCOMMIT\n")
        probe.load(Family.IPV4, text)
        _, sim = model(text, Family.IPV4)
        for sport, dport in ((1, 443), (1, 442), (2, 443), (2, 442)):
            spec = {"proto": proto, "sport": sport, "dport": dport, "iif": "in0", **V4}
            pkt = from_json(spec | ({"tcp_flags": ["SYN"]} if proto == "tcp" else {}))
            kernel = bool(probe.send(pkt).filter.rules)
            meant = sport != 1 and dport != 443
            assert bool(sim.run(pkt).matched) == meant
            assert kernel == ((sport != 1 or dport != 443) if buggy else meant), (proto, sport, dport, kernel)


# --- the instruments themselves (no namespace needed) -----------------------------------------

def test_counter_snapshots_and_what_moved():
    before = read_counters("*filter\n:INPUT DROP [3:120]\n:U - [0:0]\n[1:40] -A INPUT -j U\n[0:0] -A U\nCOMMIT\n")
    after = read_counters("*filter\n:INPUT DROP [4:160]\n:U - [0:0]\n[2:80] -A INPUT -j U\n[2:80] -A U\nCOMMIT\n")
    m = moved(before, after)
    assert m.rules == Counter({("filter", "INPUT", 1): 1, ("filter", "U", 1): 2})
    assert m.policies == Counter({("filter", "INPUT"): 1})
    with pytest.raises(ValueError):
        moved(before, read_counters("*filter\n:INPUT DROP [3:120]\n:U - [0:0]\n[1:40] -A INPUT -j U\nCOMMIT\n"))


def test_frames_carry_the_packet_exactly():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    from scapy.layers.l2 import Ether

    pkt = from_json(tcp(["FIN", "PSH", "URG"], src="127.0.0.1", length=60, ttl=9))
    f = Ether(frame(pkt, 77, "02:00:00:00:00:01"))
    assert f.dst == "02:00:00:00:00:01" and f[IP].src == "127.0.0.1" and f[IP].ttl == 9 and f[IP].len == 60
    assert int(f[TCP].flags) == 0x29 and f[TCP].dport == 22
    fresh = f[IP].copy()
    del fresh[TCP].chksum
    assert IP(bytes(fresh))[TCP].chksum == f[TCP].chksum  # the checksum is right for the spoofed header
    frag = Ether(frame(from_json({"proto": "udp", "dport": 53, "frag_offset": 3, "more_fragments": True,
                                  "length": 100, **V4}), 5, "02:00:00:00:00:01"))
    assert frag[IP].frag == 3 and frag[IP].flags == 1 and frag[IP].len == 100
    frag6 = Ether(frame(from_json({"proto": "udp", "dport": 53, "frag_offset": 185, **V6}), 5,
                        "02:00:00:00:00:01"))
    assert frag6[IPv6].nh == 44 and frag6[IPv6ExtHdrFragment].offset == 185 and frag6[IPv6ExtHdrFragment].m == 0
    ns = Ether(frame(from_json({"proto": "icmpv6", "icmp_type": 135, "src": "2001:db8::9",
                                "dst": "ff02::1:ff00:1"}), 5, "02:00:00:00:00:01"))
    assert ns.dst == "33:33:ff:00:00:01"
