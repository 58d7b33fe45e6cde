"""Run the lab: load a ruleset on the server, send every probe, compare with the simulator.

Observation is exact and synchronous (as in lab.differential): each crafted probe is followed
by a sync packet the server's raw table drops and counts; once it has counted, the probe has
been handled, and the harness's security-table counters (after filter) say whether filter let
it through (INPUT, probes carry hop limit probes.MARK_TTL) and which answer left the server
(OUTPUT: SYN/ACK, RST, ICMP unreachable, echo reply). Answers to crafted probes are then
dropped, so no host reacts to a connection it never opened. Real connections (lab.agent) are
observed by the host that makes them. The simulator sees every packet, in order, at the time
it was sent (seconds since the ruleset was loaded), and again at the time the kernel had surely
handled it: where the two differ (a rate limit refilled in between), the row shows both and is
`unpredictable`, never `ok`.

State shared by all sources (a `-m limit` bucket, a hashlimit table not keyed by source, an
`--rdest` recent list, a connlimit count not per source) would make every probe's outcome depend
on every earlier probe and on exactly when the kernel counted it, which the lab cannot know to
the nanosecond. So for such a ruleset each probe group (one crafted probe, one connection, a
brute-force pattern, a burst) starts from known state in both the kernel and the simulator:
before a group, if a packet since the last reset reached a stateful match (as the simulator
saw it), the family's tables are emptied and loaded again and a fresh simulator takes over.
Emptying first matters: within one iptables-restore transaction the new rules would look up
the old xt_recent/xt_hashlimit tables by name and keep their entries, while a new `limit`
expression alone starts with a full bucket. ipset contents survive both (the simulator keeps
them too). Per-source state is left to accumulate: one source's probes are simulated in order.

The ruleset is loaded with ipset restore + iptables-restore/ip6tables-restore (the iptables
rendering) into the lab's server namespace only.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..child import CWD, python_module
from ..extensions import REGISTRY
from ..model import Family, Ruleset
from ..model.packet import Packet, from_json
from ..render.ipset import render_ipsets
from ..render.save import render_save, rule_line
from .counters import moved, read_counters
from .differential import RESTORE, SAVE, SYNC_PORT, SYNC_SRC, await_sync
from .hosts import IFACE, Lab
from .inject import Injector
from .predict import Predictor, ProbeOutcome
from .probes import (
    MARK_TTL,
    SPORTS,
    TCP_KINDS,
    ProbedService,
    ProbeSource,
    server_address,
    services,
    sources,
)
from .report import Report, Row

if TYPE_CHECKING:
    from ..policy.compile import CompiledPolicy

Progress = Callable[[str], None]
REPLY_RULES = ("syn-ack", "rst", "unreach", "echo-reply")
BRUTE, BURST = 12, 150
HARNESS_RAW = 2  # the harness's own raw PREROUTING rules, ahead of the ruleset's


def harness(fam: Family, raw_rules: list[str]) -> str:
    ttl = "-m ttl --ttl-eq" if fam is Family.IPV4 else "-m hl --hl-eq"
    icmp = ("-p icmp --icmp-type 3", "-p icmp --icmp-type 0") if fam is Family.IPV4 else \
        ("-p ipv6-icmp --icmpv6-type 1", "-p ipv6-icmp --icmpv6-type 129")
    ports = f"{SPORTS[0]}:{SPORTS[1]}"
    return ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f"-A PREROUTING -s {SYNC_SRC[fam]} -p udp -m udp --dport {SYNC_PORT} -j DROP\n"
            f"-A PREROUTING {ttl} {MARK_TTL}\n"  # counts every probe arriving, whatever filter does
            + "".join(f"{r}\n" for r in raw_rules) + "COMMIT\n"
            "*security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f"-A INPUT {ttl} {MARK_TTL}\n"
            f"-A OUTPUT -p tcp -m tcp --dport {ports} --tcp-flags SYN,ACK,RST SYN,ACK\n"
            f"-A OUTPUT -p tcp -m tcp --dport {ports} --tcp-flags RST RST\n"
            f"-A OUTPUT {icmp[0]}\n-A OUTPUT {icmp[1]}\n"
            f"-A OUTPUT -p tcp -m tcp --dport {ports} -j DROP\nCOMMIT\n")


def split_raw(rs: Ruleset) -> tuple[list[str], str]:
    """The ruleset's raw PREROUTING rules (run after the sync rule) and the rest of its save text."""
    if "security" in rs.tables:
        raise ValueError("the lab needs the security table for its own counters; this ruleset uses it")
    rules, rest, table = [], [], None
    for line in render_save(rs).splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table == "raw":
            if line.startswith("-A "):
                if not line.startswith("-A PREROUTING "):
                    raise ValueError(f"the lab cannot run this raw-table rule beside its own: {line}")
                rules.append(line)
        else:
            rest.append(line)
        if line == "COMMIT":
            table = None
    return rules, "".join(f"{x}\n" for x in rest)


def shared_state(rs: Ruleset) -> list[str]:
    """The rules whose stateful match keeps state that probes from different sources share and
    whose target can change a verdict (a LOG rule's limit cannot)."""
    out = []
    for table in rs.tables.values():
        for name, chain in table.chains.items():
            for r in chain.rules:
                if r.target is None or REGISTRY.logs(r.target.name, rs.family):
                    continue
                for m in r.matches:
                    ext = REGISTRY.find("match", m.name, rs.family)
                    if ext is not None and ext.shares_state(m.data, rs.family):
                        out.append(rule_line(name, r, rs.family))
                        break
    return out


def rule_texts(rs: Ruleset) -> dict[tuple, str]:
    """(table, chain, n) -> the rule as iptables-save writes it, for the report."""
    return {(t, c, n): f"{t} {c} {n}: {rule_line(c, r, rs.family)}" for t, table in rs.tables.items()
            for c, chain in table.chains.items() for n, r in enumerate(chain.rules, 1)}


class Agent:
    """A lab.agent process in a host namespace."""

    def __init__(self, ns):
        self.proc = ns.spawn(python_module("stockade.lab.agent"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=CWD)
        self.ask_raw()

    def ask_raw(self, req: dict | None = None) -> dict:
        if req is not None:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the lab agent exited")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()


@dataclass
class LabTarget:
    family: Family
    rs: Ruleset
    server: str


class Session:
    """One lab run over both families' rulesets."""

    def __init__(self, rulesets: dict[Family, Ruleset], families: list[Family], admin_groups: set[str],
                 servers: dict[Family, list[str]] | None, report: Report, progress: Progress):
        self.families = families
        self.report, self.progress = report, progress
        self.targets: dict[Family, LabTarget] = {}
        self.sources: dict[Family, list[ProbeSource]] = {}
        self.extra: list[str] = []
        for fam in Family:
            rs = rulesets.get(fam) or Ruleset(fam)
            addrs = (servers or {}).get(fam) or [server_address(rs, [])]
            self.targets[fam] = LabTarget(fam, rs, addrs[0])
            self.extra += addrs
            self.sources[fam] = sources(rs, admin_groups, addrs[0]) if fam in families else []
        self.services = services([t.rs for t in self.targets.values()])
        self.next_sport: dict[str, int] = {}
        self.shared = {fam: shared_state(t.rs) for fam, t in self.targets.items()}
        self.texts = {fam: rule_texts(t.rs) for fam, t in self.targets.items()}
        self.preds = {fam: Predictor(t.rs) for fam, t in self.targets.items()}
        self.resets = dict.fromkeys(Family, 0)

    def sport(self, src: str, n: int = 1) -> int:
        base = self.next_sport.get(src, SPORTS[0])
        if base + n > SPORTS[1]:
            raise RuntimeError(f"out of probe source ports for {src}")
        self.next_sport[src] = base + n
        return base

    # -- set-up ----------------------------------------------------------------------------------------

    def run(self) -> None:
        hosts: dict[str, list[str]] = {"admin": [], "peer": [], "internet": []}
        for fam in self.families:
            for s in self.sources[fam]:
                if s.host:
                    hosts[s.host].append(s.addr)
        with ExitStack() as stack:
            self.progress("lab: creating the server and host namespaces")
            self.lab = stack.enter_context(Lab(self.extra, hosts))
            server = self.lab.server
            ports = {p: ",".join(str(s.port) for s in self.services if s.proto == p and s.listening)
                     for p in ("tcp", "udp")}
            svc = server.spawn(python_module("stockade.lab.services", f"tcp:{ports['tcp']}", f"udp:{ports['udp']}"),
                               stdout=subprocess.PIPE, text=True, cwd=CWD)
            stack.callback(svc.stdout.close)
            if svc.stdout.readline().strip() != "ready":
                raise RuntimeError("the lab's listeners did not start")
            mac = server.link_mac(IFACE)
            self.inject, self.agents = {}, {}
            for role, h in self.lab.hosts.items():
                self.inject[role] = stack.enter_context(Injector(h.ns, IFACE, mac))
                agent = Agent(h.ns)
                stack.callback(agent.close)
                self.agents[role] = agent
            self.spoof = self.inject.get("internet") or next(iter(self.inject.values()))
            self.progress("lab: loading the ruleset (ipset, iptables-restore, ip6tables-restore)")
            self._load()
            for fam in self.families:
                self._family(fam)
                if self.shared[fam]:
                    self.report.notes.append(
                        f"IPv{int(fam)}: state shared by all sources in {len(self.shared[fam])} rule(s) "
                        f"({'; '.join(self.shared[fam])}); the ruleset was reloaded and the simulator restarted "
                        f"{self.resets[fam]} time(s), before each probe group that followed one that reached them")

    def _text(self, fam: Family) -> str:
        raw, rest = split_raw(self.targets[fam].rs)
        return harness(fam, raw) + rest

    def reset(self, fam: Family) -> None:
        """Known state again (see the module docstring): empty the family's tables, load them again,
        and start a fresh simulator."""
        text = self._text(fam)
        self.lab.server.run([RESTORE[fam]], input="".join(x for x in text.splitlines(True) if not x.startswith("-A ")))
        self.lab.server.run([RESTORE[fam]], input=text)
        self.resnap(fam)
        self.preds[fam] = self.preds[fam].fresh()
        self.resets[fam] += 1

    def group(self, fam: Family) -> Predictor:
        """The predictor for the next probe group, after a reset if shared state was used since the last."""
        if self.shared[fam] and self.preds[fam].touched():
            self.reset(fam)
        return self.preds[fam]

    def _load(self) -> None:
        server = self.lab.server
        sets = render_ipsets([t.rs for t in self.targets.values()])
        if sets.strip():
            server.run(["ipset", "restore"], input=sets)
        for fam in self.targets:
            server.run([RESTORE[fam]], input=self._text(fam))
        self.t0 = time.monotonic()
        self.snap = {fam: read_counters(server.run([SAVE[fam], "-c"]).stdout) for fam in Family}

    # -- observation ----------------------------------------------------------------------------------

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def resnap(self, fam: Family) -> None:
        self.snap[fam] = read_counters(self.lab.server.run([SAVE[fam], "-c"]).stdout)

    def observe(self, inj: Injector, fam: Family, pkts: list[Packet], pin: bool = False) -> tuple[int, dict, float]:
        """Send the packets and a sync; return (packets filter passed, answers by kind, time done)."""
        sync = from_json({"proto": "udp", "src": SYNC_SRC[fam], "dst": self.targets[fam].server,
                          "sport": SYNC_PORT, "dport": SYNC_PORT})
        if pin:  # one IP identification for every fragment of the datagram
            ident = inj.next_ident()
            inj.next_ident = lambda: ident
        try:
            inj.send(*pkts, sync)
        finally:
            if pin:
                del inj.next_ident
        return self.wait_sync(fam)

    def wait_sync(self, fam: Family, timeout: float = 5.0) -> tuple[int, dict, float]:
        after, delta = await_sync(lambda: read_counters(self.lab.server.run([SAVE[fam], "-c"]).stdout),
                                  self.snap[fam], timeout, poll=0.001)
        self.snap[fam] = after
        self.delta = delta
        replies = {k: delta.rules[("security", "OUTPUT", n)] for n, k in enumerate(REPLY_RULES, 1)}
        return delta.rules[("security", "INPUT", 1)], replies, self.now()

    # -- prediction over the timing window -----------------------------------------------------------

    def window(self, pred: Predictor, t_send: float, t_done: float, fn, observed) -> tuple[object, str, str, str]:
        """Predict with `fn(t)` at the send time and, from the same memory, at the time the kernel had
        surely handled the probe; returns (prediction, as shown, status, note). Equal: exact. Different
        (a rate limit refills in between): the kernel may have done either, so the row shows both and
        is `unpredictable` (a MISMATCH if it did neither); the memory follows the branch it took."""
        fork = pred.fork()
        a = fn(t_send)
        mem_a, pred.sim.memory = pred.sim.memory, fork
        b = fn(t_done)
        unknown = [x for x in (a, b) if x in ("unknown", "U") or getattr(x, "verdict", "") == "UNKNOWN"]
        if a == b or observed != b:
            pred.sim.memory = mem_a
        chosen = b if a != b and observed == b else a
        if unknown:
            why = getattr(unknown[0], "why", "") or "a match it cannot decide"
            return chosen, str(a) if a == b else f"{a} | {b}", "unpredictable", f"the simulator cannot say: {why}"
        if a == b:
            return a, str(a), "ok", ""
        return chosen, f"{a} | {b}", "unpredictable" if observed in (a, b) else "MISMATCH", \
            (f"timing: a rate limit refills while the probe is in flight ({t_send:.3f}..{t_done:.3f} s): "
             f"{a} if handled at once, {b} if at the end")

    def counted(self, fam: Family, out: ProbeOutcome) -> tuple[str, bool]:
        """The simulator's deciding rule for a single-packet probe, and whether its kernel counter moved."""
        if out.decided is None:
            return "", True
        table, chain, n = out.decided
        if n is None:
            return f"{table} {chain} policy", self.delta.policies[(table, chain)] >= 1
        shift = HARNESS_RAW if (table, chain) == ("raw", "PREROUTING") else 0
        return self.texts[fam][(table, chain, n)], self.delta.rules[(table, chain, n + shift)] >= 1

    # -- the probes -----------------------------------------------------------------------------------

    def _family(self, fam: Family) -> None:
        self.resnap(fam)
        held = []
        for src in self.sources[fam]:
            self.progress(f"lab: IPv{int(fam)} probes from {src.label} ({src.addr})")
            if src.host and (hold := self._hold(src)):
                held.append(hold)
            for svc in self.services:
                self._crafted(src, svc)
            if src.host:
                for svc in self.services:
                    if svc.proto == "tcp":
                        self._connect(src, svc)
        for src, row_hold, conn in held:
            self._echo(src, row_hold, conn)
        for src in self.sources[fam]:
            if any(s.port == 22 and s.proto == "tcp" for s in self.services):
                self._brute(src)
            if src.host:
                self._burst(src)

    def _pkt(self, src: ProbeSource, svc: ProbedService, **kw) -> Packet:
        t = self.targets[src.family]
        spec = {"proto": svc.proto if svc.proto != "icmp" else ("icmp" if src.family is Family.IPV4 else "ipv6-icmp"),
                "src": src.addr, "dst": t.server, "iif": IFACE, "ttl": MARK_TTL}
        if svc.port is not None:
            spec |= {"sport": self.sport(src.addr), "dport": svc.port}
        else:
            spec["icmp_type"] = 8 if src.family is Family.IPV4 else 128
        return from_json(spec | kw)

    def _inj(self, src: ProbeSource) -> Injector:
        return self.inject[src.host] if src.host else self.spoof

    def _row(self, src: ProbeSource, svc: ProbedService | str, probe: str, observed: str, predicted: str,
             note: str = "", status: str = "ok", rule: str = "") -> Row:
        return self.report.add(Row(int(src.family), src.label, src.addr, str(svc), probe, observed, predicted,
                                   status, note, rule))

    def _crafted(self, src: ProbeSource, svc: ProbedService) -> None:
        if svc.proto == "tcp":
            kinds = [(k, {"tcp_flags": list(f)}) for k, f in TCP_KINDS.items()]
        elif svc.proto == "udp":
            kinds = [("udp", {})]
        else:
            kinds = [("echo", {})]
        for kind, kw in kinds:
            pred = self.group(src.family)
            pkt = self._pkt(src, svc, **kw)
            t_send = self.now()
            passed, replies, t_done = self.observe(self._inj(src), src.family, [pkt])
            obs = ProbeOutcome("ACCEPT" if passed else "REJECT" if any(replies.values()) else "DROP",
                          next((k for k, v in replies.items() if v), "none"))
            exp, shown, status, note = self.window(pred, t_send, t_done,
                                                   lambda t, p=pkt, pr=pred: pr.outcome(p.with_(t=t), svc.listening),
                                                   obs)
            rule = ""
            if status == "ok":
                rule, ok = self.counted(src.family, exp)
                if not ok:
                    status, note = "MISMATCH", "the kernel did not count the rule the simulator says decided"
            self._row(src, svc, kind, str(obs), shown, note, status, rule)
        if svc.proto == "icmp":
            self._fragments(src, svc)

    def _fragments(self, src: ProbeSource, svc: ProbedService) -> None:
        """An echo request in two fragments; filter sees the reassembled datagram unless it is IPv6
        without conntrack, where INPUT sees each fragment."""
        pred = self.group(src.family)
        v4 = src.family is Family.IPV4
        size = 16 if v4 else 24  # each piece's payload bytes after the IP (and fragment) header
        hdr = 20 if v4 else 48
        first = self._pkt(src, svc, more_fragments=True, length=hdr + size)
        second = first.with_(frag_offset=size // 8, more_fragments=False)
        whole = first.with_(more_fragments=False, length=hdr - (0 if v4 else 8) + 2 * size)
        t_send = self.now()
        passed, replies, t_done = self.observe(self._inj(src), src.family, [first, second], pin=True)
        reply = next((k for k, v in replies.items() if v), "none")
        asked = [whole] if v4 or pred.sim.conntrack else [first, second]

        def fn(t: float) -> tuple[int, str] | str:
            outs = [pred.outcome(p.with_(t=t), False, answered=(p is whole)) for p in asked]
            if any(o.verdict == "UNKNOWN" for o in outs):
                return "unknown"
            return sum(o.verdict == "ACCEPT" for o in outs), outs[-1].reply if v4 else "?"
        obs = (passed, reply if v4 else "?")
        exp, _, status, note = self.window(pred, t_send, t_done, fn, obs)
        show = (lambda x: f"{x[0]} passed, {x[1]}") if v4 else (lambda x: f"{x[0]} passed")
        shown = exp if isinstance(exp, str) else show(exp)
        if v4:
            self._row(src, svc, "fragments", show(obs), shown, note, status)
        else:
            self._row(src, svc, "fragments", show(obs), shown, status="unobservable",
                      note="the pieces' sender cannot give the reassembled ICMPv6 datagram a right checksum "
                           "(it covers the full length), so the kernel may drop it as corrupt; not compared")

    def _syn_outcome(self, pred: Predictor, pkt: Packet, listening: bool) -> str:
        out = pred.outcome(pkt, listening)
        if out.verdict == "UNKNOWN":
            return "unknown"
        if out.reply == "syn-ack":
            pred.decide(pkt.with_(tcp_flags=0x10, state="ESTABLISHED"))
            pred.decide(pkt.with_(tcp_flags=0x04, state="ESTABLISHED"))
            return "open"
        return {"rst": "refused", "unreach": "refused"}.get(out.reply, "timeout")

    def _real(self, src: ProbeSource, svc: ProbedService, op: str) -> tuple[dict, float, float]:
        t = self.targets[src.family]
        t_send = self.now()
        res = self.agents[src.host].ask_raw({op: [src.addr, t.server, svc.port], "timeout": 0.3})
        t_done = self.now()
        self.resnap(src.family)
        return res, t_send, t_done

    def _real_pkt(self, src: ProbeSource, svc: ProbedService, sport: int) -> Packet:
        return from_json({"proto": "tcp", "src": src.addr, "dst": self.targets[src.family].server, "sport": sport,
                          "dport": svc.port, "tcp_flags": ["SYN"], "iif": IFACE})

    def _connect(self, src: ProbeSource, svc: ProbedService) -> None:
        pred = self.group(src.family)
        res, t_send, t_done = self._real(src, svc, "connect")
        pkt = self._real_pkt(src, svc, res["sport"])
        _, shown, status, note = self.window(pred, t_send, t_done, lambda t: self._syn_outcome(
            pred, pkt.with_(t=t), svc.listening), res["result"])
        self._row(src, svc, "connect", res["result"], shown, note, status)

    def _hold(self, src: ProbeSource):
        """Open a connection to the first listening TCP service (SSH last: its limits count packets); None if
        the ruleset names no TCP port (e.g. a policy with admin groups only), so none listens."""
        pred = self.group(src.family)
        tcp = sorted((s for s in self.services if s.proto == "tcp" and s.listening), key=lambda s: s.port == 22)
        if not tcp:
            return None
        svc = tcp[0]
        res, t_send, t_done = self._real(src, svc, "hold")
        pkt = self._real_pkt(src, svc, res["sport"])
        _, shown, status, note = self.window(pred, t_send, t_done, lambda t: self._syn_outcome(
            pred, pkt.with_(t=t), True), res["result"])
        row = self._row(src, svc, "hold", res["result"], shown, note, status)
        return src, row, (svc, res, pkt)

    def _echo(self, src: ProbeSource, row_hold: Row, conn) -> None:
        svc, res, pkt = conn
        if res["result"] != "open":
            self._row(src, svc, "established", "not run", "not run",
                      f"the held connection did not open ({res['result']})")
            return
        pred = self.group(src.family)
        t_send = self.now()
        got = self.agents[src.host].ask_raw({"echo": res["id"], "timeout": 0.5})["result"]
        self.resnap(src.family)
        data = pkt.with_(tcp_flags=0x18, state="ESTABLISHED", t=t_send, length=61 if src.family is Family.IPV4 else 81)
        reply = data.with_(src=data.dst, dst=data.src, sport=data.dport, dport=data.sport, hook="OUTPUT", iif=None,
                           oif=IFACE)
        ways = [pred.decide(data).verdict, pred.decide(reply).verdict]
        pred.decide(pkt.with_(tcp_flags=0x04, state="ESTABLISHED", t=t_send))
        note = f"data sent {t_send:.1f} s after the ruleset was loaded, after every other probe from this source"
        if "UNKNOWN" in ways:
            self._row(src, svc, "established", got, "unknown", note, "unpredictable")
            return
        self._row(src, svc, "established", got, "alive" if ways == ["ACCEPT", "ACCEPT"] else "dead", note)

    def _brute(self, src: ProbeSource) -> None:
        """An SSH brute-force pattern: BRUTE new connections (SYNs), one after another, one probe group."""
        svc = next(s for s in self.services if s.port == 22 and s.proto == "tcp")
        pred = self.group(src.family)
        obs_seq, exp_seq, statuses, notes = [], [], set(), []
        for _ in range(BRUTE):
            pkt = self._pkt(src, svc, tcp_flags=["SYN"])
            t_send = self.now()
            passed, replies, t_done = self.observe(self._inj(src), src.family, [pkt])
            obs = "A" if passed else "R" if any(replies.values()) else "D"
            _, shown, status, note = self.window(pred, t_send, t_done,
                                                 lambda t, p=pkt: pred.outcome(p.with_(t=t), True).verdict[0], obs)
            obs_seq.append(obs)
            exp_seq.append(shown if len(shown) == 1 else f"[{shown.replace(' | ', '')}]")
            statuses.add(status)
            notes += [note] if note and note not in notes else []
        status = next((s for s in ("MISMATCH", "unpredictable") if s in statuses), "ok")
        self._row(src, svc, f"ssh-brute x{BRUTE}", "".join(obs_seq), "".join(exp_seq),
                  "; ".join(notes) or "A accepted, D dropped, R rejected", status)

    def _hping(self, src: ProbeSource, svc: ProbedService, base: int) -> float:
        """Send the burst with hping3; return when the server had seen every packet of it (the
        harness's raw counter of marked probes), which also ends hping3's wait for late answers."""
        fam = src.family
        cpu = str(min(os.sched_getaffinity(0)))
        proc = self.lab.hosts[src.host].ns.spawn(
            ["taskset", "-c", cpu, "hping3", "-q", "-S", "-p", str(svc.port), "-s", str(base), "-t", str(MARK_TTL),
             "-c", str(BURST), "-i", "u100", "-a", src.addr, self.targets[fam].server],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                seen = moved(self.snap[fam], read_counters(self.lab.server.run([SAVE[fam], "-c"]).stdout))
                t = self.now()
                if seen.rules[("raw", "PREROUTING", 2)] >= BURST or proc.poll() is not None \
                        or time.monotonic() > deadline:
                    return t
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=5)

    def _tally(self, pred: Predictor, pkts: list[Packet], listening: bool) -> dict[str, int]:
        outs = [pred.outcome(p, listening) for p in pkts]
        tally = {"passed": sum(o.verdict == "ACCEPT" for o in outs)}
        return tally | {k: sum(o.reply == k for o in outs) for k in REPLY_RULES} | \
            {"unknown": sum(o.verdict == "UNKNOWN" for o in outs)}

    def _burst(self, src: ProbeSource) -> None:
        """A SYN flood from one source, one probe group: hping3 (IPv4) or one injector batch (IPv6), to a
        listening port other than SSH (its pattern is the brute force's), else to a closed one.

        The kernel handled each packet at some instant between the send time and the time it had seen
        them all; which instants is not recorded, so the prediction is the range between the two ends
        of that window: every packet at the send time (no refill at all) and the packets spread evenly
        over the window (every refill in it used)."""
        tcp = [s for s in self.services if s.proto == "tcp"]
        svc = next((s for s in tcp if s.listening and s.port != 22), None) or \
            next((s for s in tcp if not s.listening), tcp[0])
        fam = src.family
        pred = self.group(fam)
        base = self.sport(src.addr, BURST)
        pkts = [self._pkt(src, svc, tcp_flags=["SYN"], sport=base + i) for i in range(BURST)]
        t_send = self.now()
        if fam is Family.IPV4:
            t_done = self._hping(src, svc, base)
            passed, replies, _ = self.observe(self._inj(src), fam, [])
            tool = "hping3"
        else:
            passed, replies, t_done = self.observe(self._inj(src), fam, pkts)
            tool = "scapy"
        fork = pred.fork()
        early = self._tally(pred, [p.with_(t=t_send) for p in pkts], svc.listening)
        pred.sim.memory = fork
        step = (t_done - t_send) / (BURST - 1)
        late = self._tally(pred, [p.with_(t=round(t_send + i * step, 6)) for i, p in enumerate(pkts)],
                           svc.listening)
        obs = {"passed": passed} | replies
        keys = [k for k in ("passed", *REPLY_RULES, "unknown") if k == "passed" or obs.get(k) or late[k] or early[k]]
        spans = {k: (min(early[k], late[k]), max(early[k], late[k])) for k in keys}
        shown = ", ".join(f"{lo}" + (f"..{hi}" if hi != lo else "") + f" {k}" for k, (lo, hi) in spans.items())
        row = self._row(src, svc, f"syn-burst x{BURST} ({tool})", ", ".join(f"{obs.get(k, 0)} {k}" for k in keys),
                        shown, f"the kernel saw them within {t_done - t_send:.3f} s of sending; the prediction "
                        "spans every packet at the start (no refill) to the packets spread over that time")
        if spans.get("unknown", (0, 0))[1]:
            row.status = "unpredictable"
        else:
            row.status = "ok" if all(lo <= obs.get(k, 0) <= hi for k, (lo, hi) in spans.items()) else "MISMATCH"

def run_rulesets(target: str, rulesets: dict[Family, Ruleset], families: list[Family], admin_groups: set[str],
                 servers: dict[Family, list[str]] | None = None, progress: Progress | None = None) -> Report:
    report = Report(target)
    start = time.monotonic()
    Session(rulesets, families, admin_groups, servers, report, progress or (lambda _: None)).run()
    report.seconds = time.monotonic() - start
    return report


def run_lab(c: CompiledPolicy, policy_path: str, progress: Progress | None = None,
            families: list[Family] | None = None) -> Report:
    """Prove a compiled policy in the lab."""
    admin = set(c.policy.admin) | {g for a in c.policy.allow if "ssh" in a.services for g in a.sources}
    return run_rulesets(policy_path, c.rulesets, families or list(Family), admin, progress=progress)
