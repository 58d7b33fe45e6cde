"""Flattening: jumps, goto and RETURN inlined into one first-match list that decides as the simulator does."""
import dataclasses
import ipaddress
import random

import pytest

from stockade.extensions import REGISTRY
from stockade.model import Family
from stockade.model.packet import Packet
from stockade.parse.read import read
from stockade.semantics.flatten import FlatError, flatten
from stockade.semantics.simulate import Env, Simulator


def ruleset(body: str, family: Family = Family.IPV4):
    b = read("*filter\n" + body + "\nCOMMIT\n", "t.rules", "save", family)
    assert not [d for d in b.diagnostics if d.severity == "error"], b.diagnostics
    return b.rulesets[family]


def text(rule, family=Family.IPV4) -> str:
    return " ".join(w for lit in rule.conds for w in lit.words(family)) + f" -> {rule.action}"


def test_return_is_negated_into_the_rest_of_its_chain_and_origins_name_the_path():
    rs = ruleset(":INPUT DROP [0:0]\n:X - [0:0]\n-A INPUT -p tcp -j X\n-A INPUT -j LOG\n"
                 "-A X -s 192.0.2.0/24 -j RETURN\n-A X -d 198.51.100.1/32 -j ACCEPT\n")
    flat = flatten(rs, "filter", "INPUT")
    assert [text(r) for r in flat.rules] == [
        "! -s 192.0.2.0/24 -d 198.51.100.1/32 -p tcp -> ACCEPT",
        " -> LOG",
        " -> DROP",
    ] or [text(r) for r in flat.rules] == [
        "-p tcp ! -s 192.0.2.0/24 -d 198.51.100.1/32 -> ACCEPT", " -> LOG", " -> DROP"]
    accept = flat.rules[0]
    assert [(o.chain, o.number, o.origin.line) for o in accept.origins] == [("INPUT", 1, 4), ("X", 2, 7)]
    assert accept.terminal and flat.rules[1].terminal is False and flat.rules[2].policy


def test_a_return_with_two_tests_splits_the_rules_after_it():
    rs = ruleset(":INPUT ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -j X\n"
                 "-A X -s 192.0.2.0/24 -p udp -j RETURN\n-A X -j DROP\n")
    rules = flatten(rs).rules
    assert [text(r) for r in rules] == ["! -s 192.0.2.0/24 -> DROP", "-s 192.0.2.0/24 ! -p udp -> DROP", " -> ACCEPT"]


def test_tests_the_path_implies_are_dropped_so_mac_chains_stay_linear():
    body = ":FORWARD DROP [0:0]\n:M - [0:0]\n-A FORWARD -s 192.0.2.0/24 -j M\n-A FORWARD -j ACCEPT\n"
    for n in range(1, 30):
        body += (f"-A M -s 192.0.2.{n}/32 -m mac --mac-source 52:54:00:00:00:{n:02x} -j RETURN\n"
                 f"-A M -s 192.0.2.{n}/32 -j DROP\n")
    body += "-A M -j RETURN\n"
    rules = flatten(ruleset(body), "filter", "FORWARD").rules
    assert len(rules) == 29 + 1  # one DROP per host (`! mac`), then the ACCEPT that matches everything
    assert text(rules[0]) == "-s 192.0.2.1/32 ! ( -m mac --mac-source 52:54:00:00:00:01 ) -> DROP"


def test_goto_skips_the_rest_of_the_calling_chain():
    rs = ruleset(":INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A INPUT -p tcp -j DROP\n"
                 "-A A -s 192.0.2.0/24 -g B\n-A A -p tcp -j REJECT\n-A B -p udp -j DROP\n")
    assert [text(r) for r in flatten(rs).rules] == [
        "-s 192.0.2.0/24 -p udp -> DROP", "! -s 192.0.2.0/24 -p tcp -> REJECT", "-p tcp -> DROP", " -> ACCEPT"]


def test_a_rule_matching_everything_ends_the_list():
    rs = ruleset(":INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j ACCEPT\n-A INPUT -j DROP\n-A INPUT -p udp -j ACCEPT\n")
    assert [r.action for r in flatten(rs).rules] == ["ACCEPT", "DROP"]


def test_a_loop_is_a_diagnostic_at_the_jump():
    """The readers refuse a loop as the kernel does; a model made otherwise still gets a diagnostic."""
    rs = ruleset(":INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A INPUT -j A\n-A A -j B\n"
                 "-A B -p tcp -j C\n")
    chain = rs.tables["filter"].chains["B"]
    chain.rules[0] = dataclasses.replace(chain.rules[0], target=dataclasses.replace(chain.rules[0].target, name="A"))
    with pytest.raises(FlatError) as e:
        flatten(rs)
    d = e.value.diagnostic
    assert d.code == "chain-loop" and d.origin.line == 8 and "A -> B -> A" in d.message


def test_a_missing_builtin_chain_is_a_diagnostic():
    with pytest.raises(FlatError) as e:
        flatten(ruleset(":INPUT ACCEPT [0:0]\n"), "nat", "PREROUTING")
    assert e.value.diagnostic.code == "unknown-chain"


def _holds(lit, pkt, family) -> bool:
    v = {"src": lambda: lit.value.contains(pkt.src), "dst": lambda: lit.value.contains(pkt.dst),
         "proto": lambda: pkt.proto == lit.value, "fragment": lambda: pkt.fragment,
         "iif": lambda: (pkt.iif or "").startswith(lit.value[:-1]) if lit.value.endswith("+") else pkt.iif == lit.value,
         "match": lambda: REGISTRY.find("match", lit.value.name, family).holds(
             lit.value.data, pkt, Env(pkt, "NEW", {}))}[lit.kind]()
    return v != lit.negated


def _flat_verdict(flat, pkt) -> str:
    for r in flat.rules:
        if r.terminal and all(_holds(lit, pkt, flat.family) for lit in r.conds):
            return r.action
    raise AssertionError("no terminal rule matched")


def _random_ruleset(rnd: random.Random) -> str:
    chains = ["A", "B", "C"]
    nets = ["192.0.2.0/24", "192.0.2.0/25", "192.0.2.128/25", "192.0.2.7/32", "198.51.100.0/24"]
    lines = [f":INPUT {rnd.choice(['ACCEPT', 'DROP'])} [0:0]"] + [f":{c} - [0:0]" for c in chains]
    for i, chain in enumerate(["INPUT"] + chains):
        for _ in range(rnd.randint(1, 5)):
            words = [f"-A {chain}"]
            if rnd.random() < 0.5:
                words.append(f"{rnd.choice(['', '! '])}-s {rnd.choice(nets)}")
            if rnd.random() < 0.4:
                words.append(f"{rnd.choice(['', '! '])}-d {rnd.choice(nets)}")
            if rnd.random() < 0.3:
                words.append(f"{rnd.choice(['', '! '])}-i {rnd.choice(['eth0', 'eth1', 'eth+'])}")
            if rnd.random() < 0.5:
                words.append(f"-p tcp -m tcp {rnd.choice(['', '! '])}--dport {rnd.choice(['22', '80', '20:30'])}")
            later = chains[i:]  # jumps only forward, so no loops
            targets = ["ACCEPT", "DROP", "RETURN", "LOG"] + [f"{rnd.choice(['-j', '-g'])} {c}" for c in later]
            t = rnd.choice(targets)
            words.append(t if t.startswith("-") else f"-j {t}")
            lines.append(" ".join(words))
    return "\n".join(lines)


def test_flat_list_decides_every_packet_as_the_simulator_does():
    rnd = random.Random(5)
    addrs = ["192.0.2.1", "192.0.2.7", "192.0.2.200", "198.51.100.9", "203.0.113.4"]
    for _ in range(150):
        rs = ruleset(_random_ruleset(rnd))
        flat, sim = flatten(rs), Simulator(rs)
        for _ in range(20):
            pkt = Packet(Family.IPV4, 6, int(ipaddress.ip_address(rnd.choice(addrs))),
                         int(ipaddress.ip_address(rnd.choice(addrs))), sport=40000,
                         dport=rnd.choice([22, 25, 80]), tcp_flags=2, iif=rnd.choice(["eth0", "eth1", "lo"]))
            assert _flat_verdict(flat, pkt) == sim.run(pkt).verdict
