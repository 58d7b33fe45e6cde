"""What a probe should find: the simulator's verdict on the server, then how the server's stack answers.

The simulator (semantics.simulate) decides the packet in the ruleset; what comes back is the
kernel's own behaviour, modelled here once:
- TCP: a RST is never answered; a SYN (no ACK) gets SYN/ACK from a listener, RST from a closed
  port; any ACK gets RST; a segment with none of SYN, ACK, RST (NULL, FIN, nmap's XMAS) is
  ignored by a listener and answered with RST by a closed port.
- UDP: a listener answers nothing (lab.services); a closed port sends ICMP(v6) port unreachable.
- ICMP(v6) echo request: echo reply.
- REJECT: its --reject-with (a RST, never for a RST; else an ICMP(v6) error).
The answer then leaves through the ruleset's OUTPUT chain, simulated too: it belongs to the
probe's connection (ESTABLISHED; RELATED for an ICMP error or a REJECT's answer) when conntrack
tracked the probe, else it opens its own flow, as conntrack sees it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..extensions import REGISTRY
from ..model import Family, Ruleset
from ..model.netfilter import ACK, RST, SYN
from ..model.packet import Packet
from ..semantics.simulate import Result, Simulator

REPLIES = ("syn-ack", "rst", "unreach", "echo-reply")


@dataclass(frozen=True)
class ProbeOutcome:
    verdict: str  # ACCEPT, DROP, REJECT (or UNKNOWN from the simulator)
    reply: str  # one of REPLIES or "none"
    # What decided the probe on the way in: (table, chain, rule number) or (table, chain, None) for a
    # built-in chain's policy; None when no chain did (a martian, a fragment). Not part of the outcome.
    decided: tuple | None = field(default=None, compare=False)
    why: str = field(default="", compare=False)  # the simulator's reason for UNKNOWN

    def __str__(self) -> str:
        return f"{self.verdict} {self.reply}"


def stack_reply(pkt: Packet, listening: bool) -> tuple[str, str | None]:
    """What the server's stack sends back for an accepted packet, and the reply's packet kind."""
    if pkt.proto == 6:
        f = pkt.tcp_flags
        if f & RST:
            return "none", None
        if f & SYN and not f & ACK:
            return ("syn-ack", "synack") if listening else ("rst", "rst")
        if f & ACK:
            return "rst", "rst"
        return ("none", None) if listening else ("rst", "rst")
    if pkt.proto == 17:
        return ("none", None) if listening else ("unreach", "unreach")
    if pkt.proto in (1, 58) and pkt.icmp_type in (8, 128):
        return "echo-reply", "echo"
    return "none", None


def reject_reply(rs: Ruleset, res: Result, pkt: Packet) -> tuple[str, str | None]:
    last = res.matched[-1]
    rule = rs.tables[last["table"]].chains[last["chain"]].rules[last["rule"] - 1]
    if getattr(rule.target.data, "with_", "") == "tcp-reset":
        return ("none", None) if pkt.tcp_flags & RST else ("rst", "rst")
    return "unreach", "unreach"


def reply_packet(pkt: Packet, kind: str, state: str | None) -> Packet:
    """The answer as it leaves the server: addresses and ports swapped, through OUTPUT."""
    base = {"src": pkt.dst, "dst": pkt.src, "hook": "OUTPUT", "iif": None, "oif": pkt.iif, "state": state, "t": pkt.t,
                "frag_offset": 0, "more_fragments": False, "ttl": 64, "length": 60}
    v6 = pkt.family is Family.IPV6
    if kind in ("synack", "rst"):
        flags = SYN | ACK if kind == "synack" else RST | (ACK if not pkt.tcp_flags & ACK else 0)
        return pkt.with_(sport=pkt.dport, dport=pkt.sport, tcp_flags=flags, tcp_options=frozenset(), **base)
    if kind == "echo":
        return pkt.with_(icmp_type=129 if v6 else 0, icmp_code=0, **base)
    return pkt.with_(proto=58 if v6 else 1, sport=None, dport=None, tcp_flags=0, tcp_options=frozenset(),
                     icmp_type=1 if v6 else 3, icmp_code=4 if v6 else 3, **base)


def decided_by(res: Result) -> tuple | None:
    """The rule (or built-in chain policy) that gave the verdict, from the simulator's trace."""
    if not res.trace:
        return None
    last = res.trace[-1]
    return (last["table"], last["chain"], last.get("rule"))


class Predictor:
    """One family's simulator with the memory of every packet the lab sent since the kernel's
    stateful matches were last fresh (lab.run resets both together)."""

    def __init__(self, rs: Ruleset, keep: dict | None = None):
        self.rs = rs
        self.sim = Simulator(rs)
        self.sim.memory.update(keep or {})

    def fork(self) -> dict:
        return {k: v if k[0] == "set" else copy.deepcopy(v) for k, v in self.sim.memory.items()}

    def fresh(self) -> Predictor:
        """A new simulator whose stateful matches start as freshly loaded rules do; ipset contents
        (which a reload leaves alone in the kernel too) carry over."""
        return Predictor(self.rs, {k: v for k, v in self.sim.memory.items() if k[0] == "set"})

    def touched(self) -> bool:
        """Whether a packet since the last reset reached a stateful match."""
        stateful = REGISTRY.stateful()
        return any(k[0] in stateful for k in self.sim.memory)

    def decide(self, pkt: Packet) -> Result:
        """Run one packet (the memory keeps it), without its reply."""
        return self.sim.run(pkt)

    def outcome(self, pkt: Packet, listening: bool, answered: bool = True) -> ProbeOutcome:
        """The verdict on `pkt` and what the client gets back (`answered=False`: the datagram is
        incomplete, as a lone fragment, so the stack never answers it)."""
        res = self.sim.run(pkt)
        tracked = self.sim.conntrack and res.ctstate in ("NEW", "ESTABLISHED", "RELATED")
        if res.verdict == "ACCEPT":
            reply, kind = stack_reply(pkt, listening) if answered else ("none", None)
            state = ("RELATED" if kind == "unreach" else "ESTABLISHED") if tracked else None
        elif res.verdict == "REJECT":
            reply, kind = reject_reply(self.rs, res, pkt)
            state = "RELATED" if tracked else None
        else:
            return ProbeOutcome(res.verdict, "none", decided_by(res), res.reason or "")
        if kind is not None and self.sim.run(reply_packet(pkt, kind, state)).verdict != "ACCEPT":
            reply = "none"  # the ruleset's OUTPUT chain stops the answer
        return ProbeOutcome(res.verdict, reply, decided_by(res))
