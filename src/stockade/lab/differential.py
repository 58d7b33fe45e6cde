"""The kernel as the reference: send a packet at a real ruleset, read what counted it, ask the simulator.

A `Probe` is a quiet topology (lab.topology) whose server runs the filter table
under test, plus fixed tables around it that make every packet observable:

- raw PREROUTING drops a *sync* packet sent right after each test packet. The
  sender is pinned to one CPU, so once the sync rule has counted, the test
  packet has been fully processed; the read never races the kernel.
- raw OUTPUT drops everything the server sends, so no reply (RST, ICMP error,
  neighbour solicitation) can loop back into its own INPUT chain.
- security INPUT/FORWARD (after filter) count the packets filter let through.
- with `observe_ct`, mangle PREROUTING has one `-m state` rule per state, so the
  conntrack state the kernel gave the packet is read from which one counted.

Conntrack is flushed before every packet, so each packet opens a fresh flow,
which is what model.conntrack derives. The raw, mangle and security rules
are never part of the model the simulator is given.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from ..extensions import REGISTRY
from ..kernel.netns import Closing
from ..model import Family, Ruleset
from ..model.packet import Packet
from ..semantics.simulate import Result
from .counters import Moved, Snapshot, moved, read_counters
from .inject import Injector
from .topology import CLIENT_IF, SERVER_V4, SERVER_V6, Topology

SAVE = {Family.IPV4: "iptables-save", Family.IPV6: "ip6tables-save"}
RESTORE = {Family.IPV4: "iptables-restore", Family.IPV6: "ip6tables-restore"}
SYNC_SRC = {Family.IPV4: "198.18.0.9", Family.IPV6: "2001:db8:ffff::9"}
SYNC_DST = {Family.IPV4: SERVER_V4, Family.IPV6: SERVER_V6}
SYNC_PORT = 9
CT_STATES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")

FIXED = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -s {sync} -p udp -m udp --dport {port} -j DROP
-A OUTPUT -j DROP
COMMIT
*security
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT
-A FORWARD
COMMIT
"""
MANGLE = "*mangle\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT",
                                                                  "POSTROUTING"))


@dataclass(frozen=True)
class Observation:
    """What the kernel did with one packet."""

    filter: Moved  # filter-table rule and policy counters that counted it
    passed: bool  # filter let it through (the security table after it counted it)
    ctstate: str | None  # the state -m state saw (None: not observed, or never reached conntrack)


@dataclass(frozen=True)
class Expectation:
    """The same, as the simulator predicts it."""

    rules: Counter
    policies: Counter
    passed: bool
    ctstate: str | None


class Probe(Closing):
    """`with Probe() as p: p.load(Family.IPV4, text); p.send(pkt)` -> Observation."""

    def __init__(self, forward: bool = True):
        self.topology = Topology(forward=forward, quiet=True)
        self.injector: Injector | None = None
        self._snap: dict[Family, Snapshot] = {}
        self._observe_ct: dict[Family, bool] = {}

    def __enter__(self) -> Self:
        with self.opening():
            t = self.topology.__enter__()
            t.server.run(["conntrack", "--version"])  # flushing needs it; fail now, not with stale flows
            for fam in Family:
                t.server.run([RESTORE[fam]], input=FIXED.format(sync=SYNC_SRC[fam], port=SYNC_PORT))
            self.injector = Injector(t.client, CLIENT_IF, t.server_mac).__enter__()
        return self

    def close(self) -> None:
        try:
            if self.injector is not None:
                self.injector.close()
        finally:
            self.injector = None
            self.topology.close()

    @property
    def server(self):
        return self.topology.server

    def load(self, family: Family, filter_text: str, observe_ct: bool = False) -> Snapshot:
        """Replace the filter table (iptables-restore input) and the conntrack observers; return counters."""
        observers = "".join(f"-A PREROUTING -m state --state {s}\n" for s in CT_STATES) if observe_ct else ""
        self.server.run([RESTORE[family]], input=MANGLE + observers + "COMMIT\n" + filter_text)
        self._observe_ct[family] = observe_ct
        self._snap[family] = self.read(family)
        return self._snap[family]

    def iptables_version(self) -> tuple[int, ...]:
        """The version of the iptables that loads the rules, e.g. (1, 8, 9)."""
        word = self.server.run(["iptables", "--version"]).stdout.split()[1]  # "iptables v1.8.9 (nf_tables)"
        return tuple(int(x) for x in word.lstrip("v").split("."))

    def read(self, family: Family) -> Snapshot:
        return read_counters(self.server.run([SAVE[family], "-c"]).stdout)

    def sync_packet(self, family: Family) -> Packet:
        from ..model.packet import from_json
        return from_json({"proto": "udp", "src": SYNC_SRC[family], "dst": SYNC_DST[family], "sport": SYNC_PORT,
                          "dport": SYNC_PORT})

    def send(self, pkt: Packet, timeout: float = 5.0) -> Observation:
        """Send one packet on a fresh conntrack table and observe every counter it moved."""
        fam = pkt.family
        if fam not in self._snap:
            raise RuntimeError(f"no ruleset loaded for IPv{int(fam)}")
        self.server.run(["conntrack", "-F"], check=False)  # fails only if conntrack was never loaded
        before = self._snap[fam]
        self.injector.send(pkt, self.sync_packet(fam))
        after, delta = await_sync(lambda: self.read(fam), before, timeout)
        self._snap[fam] = after
        states = [CT_STATES[n - 1] for (t, c, n) in delta.rules if t == "mangle" and c == "PREROUTING"]
        if len(states) > 1:
            raise AssertionError(f"the packet counted in several conntrack states: {states}")
        hook = "FORWARD" if pkt.hook == "FORWARD" else "INPUT"
        return Observation(delta.table("filter"), delta.rules[("security", hook, 1)] > 0,
                           states[0] if states else None)


def await_sync(read: Callable[[], Snapshot], before: Snapshot, timeout: float = 5.0,
               poll: float = 0.002) -> tuple[Snapshot, Moved]:
    """Read the counters until the raw PREROUTING sync rule has counted, so the packet sent before the
    sync packet has been fully handled; the counters then and what moved since `before`."""
    deadline = time.monotonic() + timeout
    while True:
        after = read()
        delta = moved(before, after)
        if delta.rules[("raw", "PREROUTING", 1)] >= 1:
            return after, delta
        if time.monotonic() > deadline:
            raise TimeoutError("the sync packet never reached the server")
        time.sleep(poll)


def filter_verdict(name: str, family: Family) -> bool:
    """Does `-j NAME` end traversal with a verdict the filter table can give (not a NAT target's)?"""
    ext = REGISTRY.find("target", name, family)
    return bool(REGISTRY.terminal(name, family)) and (ext is None or ext.tables is None or "filter" in ext.tables)


def expectation(res: Result, rs: Ruleset, hook: str) -> Expectation:
    """The counters a simulator Result says move, for a filter-only model.

    The policy counts a packet that reached the built-in chain and was not decided by
    a rule: nothing matched, or the last rule that matched did not end traversal
    (no target, a non-terminating target such as LOG, RETURN from the built-in chain,
    or the end of a user chain reached by goto).
    """
    rules = Counter((m["table"], m["chain"], m["rule"]) for m in res.matched)
    policies: Counter = Counter()
    dropped_before = res.verdict == "DROP" and res.reason is not None and not res.trace
    if not dropped_before:
        decided = False
        if res.matched:
            last = res.matched[-1]
            rule = rs.tables[last["table"]].chains[last["chain"]].rules[last["rule"] - 1]
            decided = rule.target is not None and filter_verdict(rule.target.name, rs.family)
        if not decided:
            policies[("filter", hook)] = 1
    return Expectation(rules, policies, res.verdict == "ACCEPT", res.ctstate)


def disagreements(exp: Expectation, obs: Observation, ct_observed: bool) -> list[str]:
    """Every way the simulator's prediction and the kernel's counters differ (empty: they agree)."""
    out = []
    if exp.rules != obs.filter.rules:
        out.append(f"rules: simulator {_fmt(exp.rules)}, kernel {_fmt(obs.filter.rules)}")
    if exp.policies != obs.filter.policies:
        out.append(f"policy counters: simulator {_fmt(exp.policies)}, kernel {_fmt(obs.filter.policies)}")
    if exp.passed != obs.passed:
        out.append(f"verdict: simulator {'ACCEPT' if exp.passed else 'not ACCEPT'}, "
                   f"kernel {'ACCEPT' if obs.passed else 'DROP'}")
    if ct_observed and exp.ctstate != obs.ctstate:
        out.append(f"ctstate: simulator {exp.ctstate}, kernel {obs.ctstate}")
    return out


def _fmt(c: Counter) -> str:
    items = [("/".join(str(p) for p in k) + (f" x{v}" if v != 1 else "")) for k, v in sorted(c.items())]
    return "[" + ", ".join(items) + "]"

