"""-m state and -m conntrack through the simulator: the first packet's state, the raw table and CT
targets before conntrack, the entry's tuple after NAT. Several expectations were measured on Linux 6.18
in throwaway namespaces."""
from __future__ import annotations

import pytest

from stockade.extensions import REGISTRY
from stockade.model import Family
from stockade.model.packet import from_short
from stockade.semantics.simulate import Env
from tests.simulation import V4, V6, A, D, hits, simulator

# ---- state ---------------------------------------------------------------------------------------

STATE_RULES = """
-A INPUT -m state --state NEW
-A INPUT -m state --state INVALID
-A INPUT -m state --state UNTRACKED
-A INPUT -m state ! --state ESTABLISHED,RELATED
"""


@pytest.mark.parametrize("spec, family, expected", [
    (f"tcp {A}:4000 > {D}:22 SYN", V4, [1, 4]),
    (f"tcp {A}:4000 > {D}:22 ACK", V4, [1, 4]),  # picked up mid-stream: still NEW
    (f"tcp {A}:4000 > {D}:22 SYN,ACK", V4, [2, 4]),
    (f"icmp {A} > {D} type 0", V4, [2, 4]),
    (f"tcp {A}:4000 > {D}:22 ACK state ESTABLISHED", V4, []),
    ("icmpv6 fe80::7 > ff02::1 type 135", V6, [3, 4]),  # neighbour discovery is left untracked
    ("udp [2001:db8::7]:5 > [2001:db8::1]:53", V6, [1, 4]),
])
def test_state(spec, family, expected):
    sim = simulator(STATE_RULES, family)
    assert hits(sim, f"{spec} iif eth0") == expected


def test_state_in_raw_comes_before_conntrack():
    """raw PREROUTING runs before conntrack: no entry is attached yet (measured: INVALID)."""
    sim = simulator("-A PREROUTING -m state --state INVALID\n-A PREROUTING -m state --state NEW", table="raw")
    assert hits(sim, f"tcp {A}:4000 > {D}:22 SYN iif eth0") == [1]
    assert hits(sim, f"tcp {A}:4000 > {D}:22 SYN iif eth0 state ESTABLISHED") == [1]
    # on lo the packet still carries the entry its output path attached: not modelled
    assert hits(sim, "tcp 127.0.0.1:4000 > 127.0.0.1:22 SYN iif lo") is None


def test_raw_table_after_ct_targets():
    """Measured on Linux 6.18: a template from `-j CT --zone` reads NEW, with an all-zero tuple,
    CONFIRMED; after `-j CT --notrack` the packet is UNTRACKED."""
    sim = simulator("""
-A PREROUTING -j CT --zone 1
-A PREROUTING -m state --state NEW
-A PREROUTING -m state --state INVALID
-A PREROUTING -m conntrack --ctstatus CONFIRMED
-A PREROUTING -m conntrack --ctorigsrc 0.0.0.0/32
-A PREROUTING -m conntrack --ctorigsrc 198.18.1.1
-A PREROUTING -m conntrack --ctdir ORIGINAL
""", table="raw")
    assert hits(sim, f"tcp 198.18.1.1:1000 > {D}:22 SYN iif eth0") == [1, 2, 4, 5, 7]
    sim = simulator("""
-A PREROUTING -m state --state INVALID
-A PREROUTING -m conntrack --ctstate INVALID --ctdir REPLY
-A PREROUTING -j CT --notrack
-A PREROUTING -m state --state UNTRACKED
-A PREROUTING -m state --state INVALID
""", table="raw")
    assert hits(sim, f"tcp 198.18.1.1:1000 > {D}:22 SYN iif eth0") == [1, 2, 3, 4]


def test_state_untracked_after_notrack_in_raw():
    ext = REGISTRY.find("match", "state", V4)
    data = simulator("-A INPUT -m state --state UNTRACKED").rs.tables["filter"].chains["INPUT"].rules[0].matches[0].data
    pkt = from_short(f"tcp {A}:4000 > {D}:22 SYN iif eth0")
    env = Env(pkt, "UNTRACKED", {}, key=("raw", "PREROUTING", 2, 0))
    assert ext.holds(data, pkt, env) is True
    given = pkt.with_(state="UNTRACKED")  # given untracked: was the notrack before this rule or after?
    assert ext.holds(data, given, Env(given, "UNTRACKED", {}, key=("raw", "PREROUTING", 2, 0))) is None


# ---- conntrack -----------------------------------------------------------------------------------

def conntrack_data(options: str, family: Family = V4):
    sim = simulator(f"-A INPUT -m conntrack {options}", family)
    return sim.rs.tables["filter"].chains["INPUT"].rules[0].matches[0].data


def ct_holds(options: str, spec: str, orig: str | None = None, family: Family = V4):
    ext = REGISTRY.find("match", "conntrack", family)
    pkt = from_short(spec)
    first = from_short(orig) if orig else pkt
    from stockade.model.conntrack import first_packet_state
    state = pkt.state or first_packet_state(first)
    env = Env(pkt, state, {}, key=("filter", "INPUT", 1, 0), orig=first)
    return ext.holds(conntrack_data(options, family), pkt, env)


SYN = f"tcp {A}:4000 > {D}:22 SYN iif eth0"


@pytest.mark.parametrize("options, expected", [
    ("--ctstate NEW", True),
    ("--ctstate NEW,SNAT", True),
    ("--ctstate DNAT", False),
    ("! --ctstate DNAT", True),
    ("--ctproto tcp", True),
    ("! --ctproto tcp", False),
    ("--ctorigsrc 198.51.100.0/24 --ctorigdst 192.0.2.1", True),
    ("--ctreplsrc 192.0.2.1 --ctrepldst 198.51.100.7", True),
    ("! --ctreplsrc 192.0.2.0/24", False),
    ("--ctorigsrcport 4000 --ctorigdstport 22 --ctreplsrcport 22 --ctrepldstport 4000", True),
    ("--ctorigdstport 23:65535", False),
    ("--ctstatus NONE", False),
    ("! --ctstatus NONE", True),
    ("--ctstatus EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED", False),
    ("! --ctstatus CONFIRMED", True),
    ("--ctdir ORIGINAL", True),
    ("--ctdir REPLY", False),
    ("--ctexpire 0", None),  # an unconfirmed entry's remaining time depends on the host's uptime
    ("--ctexpire 0 --ctdir REPLY", False),  # one certain failure decides
])
def test_conntrack_first_packet(options, expected):
    assert ct_holds(options, SYN) is expected


def test_conntrack_after_dnat():
    """DNAT rewrote the destination: the reply tuple comes from the new one, and the DNAT bit is set."""
    now = f"tcp {A}:4000 > 10.0.0.5:2222 SYN iif eth0"
    assert ct_holds("--ctstate DNAT --ctorigdst 192.0.2.1 --ctorigdstport 22", now, orig=SYN) is True
    assert ct_holds("--ctreplsrc 10.0.0.5 --ctreplsrcport 2222 --ctrepldst 198.51.100.7", now, orig=SYN) is True
    assert ct_holds("--ctstate SNAT", now, orig=SYN) is False


def test_conntrack_icmp_tuple_ports():
    echo = f"icmp {A} > {D} type 8 iif eth0"
    assert ct_holds("--ctorigdstport 2048", echo) is True  # type << 8 | code
    assert ct_holds("--ctrepldstport 0", echo) is True  # the reply is an echo reply
    assert ct_holds("--ctorigsrcport 1", echo) is None  # the echo id is not modelled


def test_conntrack_without_entry_only_tests_state():
    synack = f"tcp {A}:4000 > {D}:22 SYN,ACK iif eth0"
    assert ct_holds("--ctstate INVALID --ctdir REPLY", synack) is True
    assert ct_holds("--ctdir ORIGINAL", synack) is False
    assert ct_holds("! --ctstate NEW --ctexpire 5", synack) is True


def test_conntrack_given_states():
    est = f"tcp {A}:4000 > {D}:22 ACK iif eth0 state ESTABLISHED"
    assert ct_holds("--ctstate ESTABLISHED", est) is True
    assert ct_holds("--ctstate NEW", est) is False
    assert ct_holds("--ctstate DNAT", est) is None  # whether the connection was NATed is not known
    assert ct_holds("--ctdir ORIGINAL", est) is None
    new = f"tcp {A}:4000 > {D}:22 SYN iif eth0 state NEW"
    assert ct_holds("--ctstatus CONFIRMED", new) is None  # a later packet of the flow would be confirmed
    assert ct_holds("--ctstatus SEEN_REPLY", new) is False


def test_conntrack_dccp_has_the_generic_tracker():
    sim = simulator("-A INPUT -m conntrack --ctorigsrcport 0 --ctorigdstport 0")
    assert hits(sim, f"dccp {A}:4000 > {D}:22 iif eth0") == [1]
    assert hits(sim, f"udp {A}:4000 > {D}:22 iif eth0") == []


def test_conntrack_ipv6():
    sim = simulator("-A INPUT -m conntrack --ctstate NEW --ctorigsrc 2001:db8::/64 --ctrepldstport 40000", V6)
    assert hits(sim, "udp [2001:db8::7]:40000 > [2001:db8::1]:53 iif eth0") == [1]
    assert hits(sim, "udp [2001:db9::7]:40000 > [2001:db8::1]:53 iif eth0") == []
