"""The one symbolic engine: every match states its constraint (model.space Box) or declares itself
undecidable, each constraint admits exactly the packets the simulator's `holds` lets through, and
a bug inside an extension fails loudly instead of reading as "undecided"."""
import dataclasses
import random

import pytest

from stockade.extensions import REGISTRY, Extension
from stockade.extensions.base import Registry
from stockade.extensions.conntrack import packet_kind
from stockade.model import Family
from stockade.model.netfilter import CT_STATES, PORT_PROTOS
from stockade.model.packet import Packet
from stockade.model.ranges import contains
from stockade.model.space import DPORT, DST, ICMP, KIND, PROTO, SPORT, SRC, AnyOf, Frame
from stockade.parse.read import read
from stockade.semantics.matrix import Service, analyze_chain
from stockade.semantics.simulate import Env


def undeclared(registry: Registry) -> list[str]:
    """Matches defining neither a constraint nor `undecidable`, or both."""
    return [name for name, exts in registry.matches.items() for e in exts
            if (type(e).constraint is not Extension.constraint) == (e.undecidable is not None)]


def test_every_match_states_its_constraint_or_declares_it_has_none():
    assert undeclared(REGISTRY) == []


def test_a_match_that_forgot_its_constraint_or_declared_both_is_named():
    class Forgot(Extension):
        name = "forgot"

    class Both(Extension):
        name, undecidable = "both", "no dimension"

        def constraint(self, data, frame):
            return {}

    reg = Registry()
    for ext in (Forgot(), Both(), REGISTRY.find("match", "tcp", Family.IPV4),
                REGISTRY.find("match", "limit", Family.IPV4)):
        reg.add(ext)
    assert undeclared(reg) == ["forgot", "both"]


RULES = {
    Family.IPV4: """
-p tcp -m tcp --dport 20:25 ! --sport 1024:65535
-p tcp -m tcp --syn
-p tcp -m tcp ! --tcp-flags SYN,ACK,FIN SYN
-p tcp -m tcp --tcp-flags ALL NONE
-p udp -m udp ! --dport 53
-p tcp -m multiport --dports 22,80:90
-p udp -m multiport ! --sports 53,123
-p tcp -m multiport --ports 22,443
-p tcp -m multiport ! --ports 22,443
-p icmp -m icmp --icmp-type echo-request
-p icmp -m icmp ! --icmp-type 3/1:3
-p icmp -m icmp --icmp-type 255/0
-m state --state NEW,RELATED
-m state ! --state INVALID
-m conntrack --ctstate ESTABLISHED,UNTRACKED
-m conntrack ! --ctstate NEW
-m conntrack --ctstate NEW,DNAT
-m conntrack --ctstate INVALID --ctproto tcp
-m conntrack --ctproto udp
-m conntrack ! --ctstate NEW ! --ctproto tcp
-m iprange --src-range 192.0.2.10-192.0.2.20 ! --dst-range 198.51.100.0-198.51.100.255
-m iprange ! --src-range 192.0.2.30-192.0.2.10
-m comment --comment x
""",
    Family.IPV6: """
-p ipv6-icmp -m icmp6 --icmpv6-type echo-request
-p ipv6-icmp -m icmp6 ! --icmpv6-type 1/3
-p tcp -m tcp --dport 22
-m iprange --src-range 2001:db8::1-2001:db8::ff
""",
}


def _packets(family: Family, rnd: random.Random, n: int):
    icmp = 1 if family is Family.IPV4 else 58
    for _ in range(n):
        proto = rnd.choice((6, 6, 17, icmp, 47, 132))
        kw = {}
        if proto in PORT_PROTOS:
            kw = {"sport": rnd.choice((20, 22, 53, 80, 123, 443, 1000, 40000)), "dport": rnd.choice((21, 22, 53, 80,
                                                                                                     85, 443, 8080))}
        if proto == 6:
            kw["tcp_flags"] = rnd.choice((0x02, 0x10, 0x12, 0x01, 0x00, 0x3F, 0x11))
        if proto == icmp:
            kw["icmp_type"], kw["icmp_code"] = rnd.choice((0, 1, 3, 8, 128, 129, 255)), rnd.choice((0, 1, 2, 3, 4))
        if family is Family.IPV4:
            src, dst = (0xC0000200 | rnd.randrange(40), 0xC6336400 | rnd.randrange(256) if rnd.random() < .5
                        else 0xCB007100 | rnd.randrange(256))
        else:
            src, dst = 0x20010DB8 << 96 | rnd.randrange(300), 0x20010DB8 << 96 | rnd.randrange(300)
        yield Packet(family, proto, src, dst, hook="INPUT", state=rnd.choice(CT_STATES), **kw)


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6])
def test_each_constraint_admits_exactly_what_holds_lets_through(family):
    rnd = random.Random(7)
    lines = RULES[family].strip().splitlines()
    text = "*filter\n:INPUT ACCEPT [0:0]\n" + "".join(f"-A INPUT {line} -j ACCEPT\n" for line in lines) + "COMMIT\n"
    got = read(text, "rules", family=family)
    assert not got.diagnostics
    rs = got.rulesets[family]
    matches = [(r.proto.number if r.proto else None, m) for r in rs.tables["filter"].chains["INPUT"].rules
               for m in r.matches]
    assert len(matches) == len(lines)
    compared = 0
    for pkt in _packets(family, rnd, 1000):
        env = Env(pkt, pkt.state, {})
        env.key = ("filter", "INPUT", 0, 0)
        frame = Frame(family, (packet_kind("p", pkt, env),))
        at = {PROTO: pkt.proto, SRC: pkt.src, DST: pkt.dst, SPORT: pkt.sport, DPORT: pkt.dport, KIND: 0,
              ICMP: None if pkt.icmp_type is None else pkt.icmp_type * 256 + pkt.icmp_code}
        for proto, m in matches:
            if proto is not None and proto != pkt.proto:
                continue  # the rule's -p keeps other packets from the match
            ext = REGISTRY.find("match", m.name, family)
            box, want = ext.constraint(m.data, frame), ext.holds(m.data, pkt, env)
            if box is None or want is None:
                continue
            boxes = box.boxes if isinstance(box, AnyOf) else (box,)
            got = any(all(contains(v, at[d]) for d, v in b.items()) for b in boxes)
            assert got == want, (m, pkt)
            compared += 1
    assert compared > 40 * len(lines), compared


def test_a_bug_inside_an_extension_fails_loudly():
    """An extension handed data it cannot read raises; the analyser no longer calls that undecided."""
    rs = read("*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n", "r",
              family=Family.IPV4).rulesets[Family.IPV4]
    rule = rs.tables["filter"].chains["INPUT"].rules[0]
    rule.matches[0] = dataclasses.replace(rule.matches[0], data=object())
    with pytest.raises(AttributeError):
        analyze_chain(rs, "filter", "INPUT", [Service(17, 53, 40000)])
