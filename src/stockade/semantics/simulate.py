"""One packet through a ruleset, hook by hook, exactly as netfilter walks it.

Order per path (netfilter hook priorities): defragmentation (-400), raw (-300),
conntrack (-200), mangle (-150), nat DNAT (-100), routing, filter (0),
security (50), nat SNAT (100). nat chains see only the first packet of a
connection. Matches the model cannot decide make the verdict "UNKNOWN" with the
rule that decided it named, never a guess.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..extensions import REGISTRY
from ..extensions.opaque import unread_rules
from ..model import Family, Rule, Ruleset, Table
from ..model.conntrack import first_packet_state
from ..model.netfilter import MARTIAN_V4, MARTIAN_V6, SEES_IIF, SEES_OIF, UNFORWARDED_V6
from ..model.packet import Packet
from .compile import CompiledTable, Undecidable

MAX_FORKS = 6  # stand-ins tried both ways for one packet (2**6 runs at most)
CT = ("ct",)
ROUTE = ("route",)
PATHS = {
    "INPUT": [("raw", "PREROUTING"), CT, ("mangle", "PREROUTING"), ("nat", "PREROUTING"), ROUTE,
              ("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"), ("nat", "INPUT")],
    "FORWARD": [("raw", "PREROUTING"), CT, ("mangle", "PREROUTING"), ("nat", "PREROUTING"), ROUTE,
                ("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
                ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")],
    "OUTPUT": [("raw", "OUTPUT"), CT, ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
               ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")],
}
_NONE = Table("none")  # what a missing table holds: no chains



def uses_conntrack(rs: Ruleset) -> bool:
    """Whether loading this ruleset turns on conntrack (and so defragmentation) in the netns."""
    if "nat" in rs.tables:
        return True
    for table in rs.tables.values():
        for chain in table.chains.values():
            for r in chain.rules:
                if any(REGISTRY.loads_conntrack("match", m.name, rs.family) for m in r.matches):
                    return True
                if r.target is not None and REGISTRY.loads_conntrack("target", r.target.name, rs.family):
                    return True
    return False


@dataclass
class Env:
    """Mutable per-packet state plus the memory stateful matches keep between packets."""

    pkt: Packet
    ctstate: str | None
    memory: Any  # the simulator's dict, or a Journal of it
    key: tuple = ()  # which rule/match is asking, for per-rule state such as -m limit
    evaluated: int = 0
    mark: int | None = 0  # None: unknown (e.g. restored from a connection mark the model lacks)
    ctmark: int | None = 0  # None: unknown
    notes: list[str] = field(default_factory=list)
    at: tuple[str, str] = ("", "")  # (table, built-in chain) being walked
    sets: dict = field(default_factory=dict)  # the ruleset's ipsets by name, for -m set
    ruleset: Ruleset | None = None  # for kernel tables rules share by name (-m recent, -m hashlimit)
    result: Result | None = None  # this packet's Result: -m connlimit reads earlier packets' verdicts
    orig: Packet | None = None  # the packet as conntrack first saw it; NAT rewrites env.pkt only
    forced: dict = field(default_factory=dict)  # stand-in match (compile key) -> the outcome being tried
    classwise: bool = True  # False once the walk meets a test or target not classwise (semantics/classes.py)

    def __post_init__(self) -> None:
        if self.orig is None:
            self.orig = self.pkt


@dataclass
class Result:
    verdict: str
    ctstate: str | None
    matched: list[dict] = field(default_factory=list)
    evaluated: int = 0
    trace: list[dict] = field(default_factory=list)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    undecided: tuple | None = None  # the stand-in match that left the verdict open (compile key)
    classwise: bool = True  # False: the answer names the packet (a martian source), so its class does not share it

    def to_json(self) -> dict:
        out = {"verdict": self.verdict, "ctstate": self.ctstate, "matched": self.matched,
               "evaluated": self.evaluated, "trace": self.trace}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = self.notes
        return out


def _spans(nets: list) -> list[tuple[int, int, Any]]:
    return [(int(n.network_address), int(n.broadcast_address), n) for n in nets]


MARTIAN_SPANS = {"V4": _spans(MARTIAN_V4), "V6": _spans(MARTIAN_V6), "UNFORWARDED_V6": _spans(UNFORWARDED_V6)}


def dropped_on_arrival(pkt: Packet, conntrack: bool, res: Result) -> bool:
    """Whether the kernel drops the packet before the first hook (res says why): an IPv6 martian source,
    or a fragment nf_defrag holds when conntrack is in use."""
    if (why := _martian(pkt, early=True)) is not None:
        res.verdict, res.reason, res.classwise = "DROP", why, False
        return True
    if conntrack and pkt.fragment and pkt.state is None:
        res.verdict, res.reason = "DROP", ("fragment held for reassembly by nf_defrag (conntrack is in use): "
                                           "no table sees it, and a lone fragment is never completed")
        return True
    return False


def dropped_by_routing(env: Env, res: Result) -> bool:
    """The routing step between PREROUTING and INPUT/FORWARD: whether it drops the packet (res says why);
    forwarding lowers env.pkt's TTL."""
    pkt = env.pkt
    if (why := _martian(pkt, early=False)) is not None:
        res.verdict, res.reason, res.classwise = "DROP", why, False
        return True
    if pkt.family is Family.IPV4 and pkt.hook == "INPUT" and pkt.fragment and pkt.state is None:
        res.verdict, res.reason = "DROP", ("IPv4 fragments are reassembled before INPUT "
                                           "(ip_local_deliver): a lone fragment never gets there")
        return True
    if pkt.hook == "FORWARD":  # ip_forward/ip6_forward lower the TTL before the FORWARD hook
        if pkt.ttl <= 1:
            res.verdict, res.reason = "DROP", "the TTL/hop limit runs out in forwarding (time exceeded)"
            return True
        env.pkt = pkt.with_(ttl=pkt.ttl - 1)
    return False


def _martian(pkt: Packet, early: bool) -> str | None:
    """Why the kernel drops this source before pkt.hook, if it does: IPv6 on receipt, before every hook
    (early); IPv4 in routing (ip_route_input_slow) and IPv6 in ip6_forward, both after PREROUTING."""
    if pkt.iif == "lo" or pkt.hook == "OUTPUT":  # looped back, or made here: nothing was received
        return None
    v4 = pkt.family is Family.IPV4
    if early:
        nets, where = ([] if v4 else MARTIAN_SPANS["V6"]), "on receipt, before any table sees it,"
    elif v4:
        nets, where = MARTIAN_SPANS["V4"], "by routing"
    else:
        nets, where = (MARTIAN_SPANS["UNFORWARDED_V6"] if pkt.hook == "FORWARD" else []), "by ip6_forward"
    src = pkt.src
    for lo, hi, net in nets:
        if lo <= src <= hi:
            return f"martian source {pkt.addr('src')} ({net}) is dropped {where} before {pkt.hook}"
    return None


_ABSENT = object()
_ATOMS = (int, float, str, bool, type(None))


def _copy(value):
    """A memory entry as it is now, for the journal: a count or a tuple of numbers (limit's tokens and
    time) cannot change in place and is kept as it is; a class's own copy (recent's tables) is called
    without deepcopy's dispatch and memo."""
    cls = value.__class__
    if cls in _ATOMS or (cls is tuple and all(v.__class__ in _ATOMS for v in value)):
        return value
    own = getattr(cls, "__deepcopy__", None)
    return own(value, {}) if own is not None else copy.deepcopy(value)


class Journal:
    """The simulator's memory as one packet's runs see it (Env.memory), when a stand-in may have to be
    tried both ways: each entry is copied the first time the packet touches it, so every try restarts
    from the memory as it was (`restore`) without a copy of the whole memory for every packet. Holds
    the dict operations the stateful extensions use."""

    __slots__ = ("memory", "saved")

    def __init__(self, memory: dict):
        self.memory, self.saved = memory, {}

    def _touch(self, key) -> None:
        if key not in self.saved:
            value = self.memory.get(key, _ABSENT)
            self.saved[key] = value if value is _ABSENT else _copy(value)

    def __contains__(self, key) -> bool:
        return key in self.memory

    def __getitem__(self, key):
        self._touch(key)
        return self.memory[key]

    def get(self, key, default=None):
        self._touch(key)
        return self.memory.get(key, default)

    def setdefault(self, key, default=None):
        self._touch(key)
        return self.memory.setdefault(key, default)

    def __setitem__(self, key, value) -> None:
        self._touch(key)
        self.memory[key] = value

    def restore(self) -> None:
        """Every entry touched back as it was before the packet."""
        for key, value in self.saved.items():
            if value is _ABSENT:
                self.memory.pop(key, None)
            else:
                self.memory[key] = _copy(value)


class _Step:
    """A built-in chain of a hook's path, with what walking it needs found once: its compiled function,
    whether it sees the input and output devices, its policy and the trace entry that ends on it."""

    __slots__ = ("tbl", "at", "fn", "iif", "oif", "nat", "policy", "ended")

    def __init__(self, compiled: CompiledTable, chain: str):
        self.tbl, self.at, self.fn = compiled.table, (compiled.table.name, chain), compiled.fns[chain]
        self.iif, self.oif, self.nat = chain in SEES_IIF, chain in SEES_OIF, compiled.table.name == "nat"
        self.policy = compiled.table.chains[chain].policy or "ACCEPT"
        self.ended = {"table": self.at[0], "chain": chain, "policy": self.policy}  # shared by results: read-only


class Simulator:
    """Simulates packets through one family's ruleset; keeps stateful-match memory across calls."""

    def __init__(self, rs: Ruleset):
        self.rs = rs
        self.conntrack = uses_conntrack(rs)
        self.memory: dict[Any, Any] = {}
        self.compiled: dict[str, CompiledTable] = {}
        self._unread: bool | None = None  # whether the ruleset holds stand-ins (extensions.opaque.Unread)
        self.entries: dict[tuple, tuple[dict, dict]] = {}  # a rule's matched and trace entries, shared: read-only
        self.paths: dict[str, list] = {}  # per hook, its steps compiled, on first use
        self.steps: dict[tuple[str, str], _Step] = {}
        self.classwise = True  # whether every run of the last packet was classwise: its class shares its answer

    def _path(self, hook: str) -> list:
        """The steps of a hook's path whose table and chain exist (a missing one has no effect on a packet),
        each chain's as a _Step."""
        tables = self.rs.tables
        path = self.paths[hook] = [s if s is CT or s is ROUTE else self._step(*s) for s in PATHS[hook]
                                   if s is CT or s is ROUTE or s[1] in tables.get(s[0], _NONE).chains]
        return path

    def run(self, pkt: Packet) -> Result:
        """The packet's fate. A rule stockade could not read (extensions.opaque.Unread) leaves it UNKNOWN
        only if it matters: when the packet gets the same verdict whether the rule's unknown match holds
        or not, that verdict stands, with a note naming the rule."""
        self.classwise = True
        if not self._stand_ins():
            return self._run(pkt, {}, self.memory)
        journal = Journal(self.memory)
        res = self._run(pkt, {}, journal)
        if res.undecided is None:
            return res
        settled = self._settle(pkt, {}, res.undecided, journal)
        if settled is None:
            journal.restore()
            return res
        settled.notes.append(f"the verdict does not depend on {res.reason.removeprefix('depends on ')}")
        return settled

    def _settle(self, pkt: Packet, forced: dict, key: tuple, journal: Journal) -> Result | None:
        """The verdict both outcomes of stand-in `key` give (trying further stand-ins the same way, at
        most MAX_FORKS deep), None if they differ or one stays UNKNOWN."""
        got = []
        for held in (True, False):
            journal.restore()
            tried = {**forced, key: held}
            res = self._run(pkt, tried, journal)
            if res.undecided is not None and len(tried) < MAX_FORKS:
                res = self._settle(pkt, tried, res.undecided, journal)
            if res is None or res.verdict == "UNKNOWN":
                return None
            got.append(res)
        return got[1] if got[0].verdict == got[1].verdict else None

    def _stand_ins(self) -> bool:
        if self._unread is None:
            self._unread = any(True for _ in unread_rules(self.rs))
        return self._unread

    def _run(self, pkt: Packet, forced: dict, memory) -> Result:
        res = Result("ACCEPT", None)
        env = Env(pkt, pkt.state, memory, mark=pkt.mark, ctmark=pkt.arrival_ctmark, sets=self.rs.sets,
                  notes=res.notes, forced=forced)  # what targets report (LOG lines, NAT rewrites) lands in the result
        env.ruleset, env.result = self.rs, res
        self._hooks(pkt, env, res)
        if not (env.classwise and res.classwise):
            self.classwise = False
        return res

    def _hooks(self, pkt: Packet, env: Env, res: Result) -> None:
        """The packet through each step of its hook's path, into res."""
        if dropped_on_arrival(pkt, self.conntrack, res):
            return
        for step in self.paths.get(pkt.hook) or self._path(pkt.hook):
            if step is CT:
                if self.conntrack and env.ctstate is None:
                    env.ctstate = first_packet_state(pkt)
                res.ctstate = env.ctstate
                continue
            if step is ROUTE:
                if dropped_by_routing(env, res):
                    return
                continue
            if step.nat and env.ctstate != "NEW":
                continue  # nat sees only the first packet of a connection that conntrack tracks
            verdict = self._walk(step, env, res)
            if verdict is not None and verdict != "ACCEPT":
                res.verdict = verdict
                res.ctstate = env.ctstate
                return
        res.ctstate = env.ctstate

    def hook(self, table: str, chain: str, env: Env, res: Result) -> str | None:
        """Walk a built-in chain for a simulator composing hooks (semantics/nft.py); None if absent."""
        tbl = self.rs.tables.get(table)
        if tbl is None or chain not in tbl.chains:
            return None
        env.sets, env.ruleset = self.rs.sets, self.rs
        return self._walk(self._step(table, chain), env, res)

    def _step(self, table: str, chain: str) -> _Step:
        step = self.steps.get((table, chain))
        if step is None:
            compiled = self.compiled.get(table)
            if compiled is None:
                compiled = self.compiled[table] = CompiledTable(self.rs.tables[table], self.rs.family)
            step = self.steps[table, chain] = _Step(compiled, chain)
        return step

    def _walk(self, step: _Step, env: Env, res: Result) -> str | None:
        """Walk a built-in chain (one that exists); return its verdict (policy if nothing decided)."""
        pkt = env.pkt
        env.at = step.at
        out: list[tuple] = []
        env.evaluated = 0
        try:
            verdict = step.fn(pkt, env, pkt.iif if step.iif else None, pkt.oif if step.oif else None, out)
        except Undecidable as e:
            verdict = "UNKNOWN"
            rule = step.tbl.chains[e.where[1]].rules[e.where[2] - 1]
            res.reason = f"depends on {e.where[0]}/{e.where[1]} rule {e.where[2]} ({_origin(rule)}): {e}"
            res.undecided = e.key
        except RecursionError:  # each jump is a call; legacy iptables loads chains nested thousands deep
            verdict = "UNKNOWN"
            res.reason = f"{step.at[0]}/{step.at[1]} nests chains deeper than the simulator follows"
        res.evaluated += env.evaluated
        if out:
            entries = self.entries
            matched, trace = res.matched, res.trace
            for where in out:
                entry = entries.get(where)
                if entry is None:
                    entry = entries[where] = self._entry(step.tbl, *where)
                matched.append(entry[0])
                trace.append(entry[1])
        if verdict is None:
            verdict = step.policy
            res.trace.append(step.ended)
        return verdict

    @staticmethod
    def _entry(tbl, t: str, c: str, n: int) -> tuple[dict, dict]:
        rule = tbl.chains[c].rules[n - 1]
        return ({"table": t, "chain": c, "rule": n},
                {"table": t, "chain": c, "rule": n, "origin": _origin(rule),
                 "target": rule.target.name if rule.target else None})


def _origin(rule: Rule) -> str | None:
    return str(rule.origin) if rule.origin else None
