"""Issue 3, "Must show": `stockade explain` answers the questions each seed asks, with the kernel's answer.

For each seed (tests/corpus.py SEEDS) read_script imports the page, render_save prints
its canonical IPv4 ruleset, and that text, with the server's addresses mapped (below),
is loaded into the server namespace of a lab.differential.Probe. Every question is a
short run of packets, and each packet is asked, in order:
- of the kernel (real frames; which filter counters moved, whether filter let it through,
  the conntrack state where the ruleset tracks connections anyway);
- of the simulator on the loaded (mapped) ruleset: same verdict, same rule and policy
  counters, same conntrack state;
- of the simulator on the imported model, with the seed's own addresses, and of
  `stockade explain SEED --from script --json`, once with `--packets` (every packet, in
  order, so -m limit/-m recent memory carries over) and once with `--packet` (the first
  packet): same verdict, rules and state as the simulator on the lab ruleset;
and must get the answer written down here. A question/answer table is printed.

Address mapping, mechanical: the server's own addresses are the ADDR of every `-d ADDR/32`
in INPUT or a user chain, in order of first appearance in the rendered ruleset, then the
address the seed gives its server if no rule names it; the i-th (from 0) becomes
203.0.113.(10+i), a local address of the harness server, wherever `ADDR/32` occurs in the
ruleset (`-d` in INPUT, `-s` in OUTPUT) and wherever a packet uses ADDR. Seeds that give
no server address are asked about 203.0.113.10 directly. Sources are spoofed as written.

Time: a packet's `t` is when it was sent, counted from when its ruleset was loaded, so
the simulator's -m limit and -m recent see the clock the kernel saw.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from stockade.lab.differential import Probe, disagreements, expectation
from stockade.model import Family, Ruleset
from stockade.model.packet import from_json
from stockade.parse.save import read_save
from stockade.parse.script import read_script
from stockade.render.save import kernel_rules, render_save
from stockade.semantics.simulate import Simulator

from ..corpus import SEEDS

LAB_NET = "203.0.113."
LAB_FIRST = 10
STRANGER = "100.64.1.1"  # on no list of any seed
TERMINAL = frozenset({"ACCEPT", "DROP", "REJECT"})
PINNED_IP_ID = 4242  # the fragments of one datagram share an IP identification


def tcp(src: str, dst: str, dport: int, *flags: str, sport: int = 40000) -> dict:
    return {"proto": "tcp", "src": src, "dst": dst, "sport": sport, "dport": dport, "tcp_flags": list(flags),
            "iif": "in0"}


def udp(src: str, dst: str, dport: int, **kw) -> dict:
    return {"proto": "udp", "src": src, "dst": dst, "sport": 40000, "dport": dport, "iif": "in0", **kw}


def ping(src: str, dst: str, **kw) -> dict:
    return {"proto": "icmp", "src": src, "dst": dst, "icmp_type": 8, "iif": "in0", **kw}


XMAS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")  # what `--tcp-flags ALL ALL` matches
NMAP_XMAS = ("FIN", "PSH", "URG")  # what `nmap -sX`, which seed 000 tells the reader to run, sends


@dataclass(frozen=True)
class Q:
    question: str
    packets: tuple[dict, ...]  # what stockade is asked, in the seed's addresses
    expect: tuple[str, ...]  # the verdict for each packet
    wire: tuple[dict, ...] | None = None  # what is sent instead, one IP id for all (fragments of one datagram)


@dataclass(frozen=True)
class Seed:
    prefix: str
    server: str | None  # the address the page gives its server, if it gives one
    questions: tuple[Q, ...]
    facts: tuple[tuple[str, str, int], ...] = ()  # (what the page meant, diagnostic code, line) the import reports
    absent: tuple[str, ...] = ()  # matches the page uses that, because of those errors, no loaded rule has


S0, IMAP0, BLOCKED0 = "202.54.10.20", "202.54.1.20", "202.54.20.22"
S2 = "192.168.1.101"
LAB = f"{LAB_NET}{LAB_FIRST}"

SEED_QUESTIONS = (
    Seed("000", S0, (
        Q("Is SSH (tcp/22) open from anywhere?", (tcp(STRANGER, S0, 22, "SYN"),), ("ACCEPT",)),
        Q("-m recent: are more than 10 new SSH connections from one address in 10 minutes refused?",
          (tcp("100.64.1.2", S0, 22, "SYN"),) * 12, ("ACCEPT",) * 11 + ("DROP",)),
        Q(f"Is the blocked host {BLOCKED0} kept out (SSH, then UDP)?",
          (tcp(BLOCKED0, S0, 22, "SYN"), udp(BLOCKED0, S0, 5000)), ("ACCEPT", "DROP")),
        Q("Is a XMAS packet (--tcp-flags ALL ALL) dropped?", (tcp(STRANGER, S0, 80, *XMAS),), ("DROP",)),
        Q("Is nmap -sX's XMAS packet (FIN,PSH,URG) dropped?", (tcp(STRANGER, S0, 80, *NMAP_XMAS),), ("ACCEPT",)),
        Q("Is a NULL packet (no flags) dropped?", (tcp(STRANGER, S0, 80),), ("DROP",)),
        Q("Is a new connection without SYN (lone ACK) dropped?", (tcp(STRANGER, S0, 80, "ACK"),), ("DROP",)),
        Q("Does `-A INPUT -f -j DROP` match a lone first fragment?",
          (udp(STRANGER, S0, 53, more_fragments=True, length=60),), ("DROP",)),
        Q("Does `-A INPUT -f -j DROP` match a lone later fragment?",
          (udp(STRANGER, S0, 53, frag_offset=3, more_fragments=True, length=60),), ("DROP",)),
        Q("Does `-f` drop a ping sent in two fragments (first fragment, then the last)?",
          (ping(STRANGER, S0, more_fragments=True, length=36), ping(STRANGER, S0, length=52)),
          ("DROP", "ACCEPT"),
          wire=(ping(STRANGER, S0, more_fragments=True, length=36), ping(STRANGER, S0, frag_offset=2, length=36))),
        Q("Is ping to the server allowed, and limited (3 echo requests)?", (ping(STRANGER, S0),) * 3,
          ("ACCEPT",) * 3),
        Q(f"Is ping to the host's other address {IMAP0} limited to 1/s, burst 1 (3 echo requests)?",
          (ping(STRANGER, IMAP0),) * 3, ("ACCEPT", "DROP", "DROP")),
        Q("Syn-flood protection: are SYNs to a closed port dropped once past the limits (8 SYNs)?",
          (tcp("100.64.1.3", S0, 8080, "SYN"),) * 8, ("ACCEPT",) * 6 + ("DROP",) * 2),
    )),
    Seed("001", None, (
        Q("Is SSH (tcp/22) open from an address not on the admin list (x.x.x.x)?",
          (tcp(STRANGER, LAB, 22, "SYN"),), ("ACCEPT",)),
        Q("Does `-p tcp --syn -m limit --limit 5/second -j ACCEPT` accept the first SYNs of a flood to a closed "
          "port (6 SYNs)?", (tcp("100.64.1.3", LAB, 8080, "SYN"),) * 6, ("REJECT",) * 6),
        Q("Is the web port 80 open?", (tcp(STRANGER, LAB, 80, "SYN"),), ("REJECT",)),
    ), facts=(("`-A FWALL-INPUT –p tcp --syn -m limit --limit 5/second -j ACCEPT` is not loaded",
               "typographic-dash", 97),
              ("the SSH rule for x.x.x.x is not loaded", "placeholder", 57),
              ("`-A FWALL-INPUT-p tcp -m tcp --dport 80 -j ACCEPT --syn` is not loaded", "glued-option", 85)),
         absent=("limit",)),
    Seed("002", S2, (
        Q("Is the mail port 25 open?", (tcp(STRANGER, S2, 25, "SYN"),), ("ACCEPT",)),
        Q("Is the web port 80 open?", (tcp(STRANGER, S2, 80, "SYN"),), ("ACCEPT",)),
        Q("Is SSH (tcp/22) closed, as the page says?", (tcp(STRANGER, S2, 22, "SYN"),), ("DROP",)),
    )),
    Seed("003", None, (
        Q("Is SSH (tcp/22) open from the admin machine 192.168.1.33?", (tcp("192.168.1.33", LAB, 22, "SYN"),),
          ("ACCEPT",)),
        Q("Is SSH (tcp/22) open from an address not on the admin list?", (tcp(STRANGER, LAB, 22, "SYN"),),
          ("ACCEPT",)),
        Q("Is the mail port 25 open?", (tcp(STRANGER, LAB, 25, "SYN"),), ("ACCEPT",)),
        Q("Is the web port 80 open?", (tcp(STRANGER, LAB, 80, "SYN"),), ("ACCEPT",)),
        Q("Can others ping the server (the page wants not)?", (ping(STRANGER, LAB),), ("DROP",)),
    )),
    Seed("004", None, (
        Q("Is SSH (tcp/22) open from an address not on the admin list (YOUR_IP_ADDRESS)?",
          (tcp(STRANGER, LAB, 22, "SYN"),), ("ACCEPT",)),
        Q("Is a XMAS packet (--tcp-flags ALL ALL) dropped?", (tcp(STRANGER, LAB, 80, *XMAS),), ("DROP",)),
        Q("Is nmap -sX's XMAS packet (FIN,PSH,URG) to SSH dropped?", (tcp(STRANGER, LAB, 22, *NMAP_XMAS),),
          ("ACCEPT",)),
        Q("Is a NULL packet (no flags) dropped?", (tcp(STRANGER, LAB, 80),), ("DROP",)),
        Q("Is a new connection without SYN (lone ACK) dropped?", (tcp(STRANGER, LAB, 80, "ACK"),), ("DROP",)),
        Q("Is the web port 80 open?", (tcp(STRANGER, LAB, 80, "SYN"),), ("ACCEPT",)),
        Q("Is the mail port 25 open?", (tcp(STRANGER, LAB, 25, "SYN"),), ("DROP",)),
    ), facts=(("the SSH restriction to YOUR_IP_ADDRESS is not loaded", "placeholder", 57),
              ("`iptables -A INPUT -p tcp -m tcp –dport 25 -j ACCEPT` is not loaded", "typographic-dash", 39))),
)


# --- the seed's ruleset in the lab ------------------------------------------------------------

def own_addresses(text: str, server: str | None) -> dict[str, str]:
    """The mapping described in the module docstring: seed address -> lab address."""
    user = set(re.findall(r"^:(\S+) - ", text, re.MULTILINE))
    seen: list[str] = []
    for chain, addr in re.findall(r"^-A (\S+) .*?-d (\d+\.\d+\.\d+\.\d+)/32 ", text, re.MULTILINE):
        if (chain == "INPUT" or chain in user) and addr not in seen:
            seen.append(addr)
    if server is not None and server not in seen:
        seen.append(server)
    return {addr: f"{LAB_NET}{LAB_FIRST + i}" for i, addr in enumerate(seen)}


def lab_text(text: str, mapping: dict[str, str]) -> str:
    for seed_addr, lab_addr in mapping.items():
        text = text.replace(f" {seed_addr}/32 ", f" {lab_addr}/32 ")
        assert not re.search(rf"(?<![\d.]){re.escape(seed_addr)}(?![\d])", text), f"{seed_addr} left unmapped"
    return text


def lab_packet(spec: dict, mapping: dict[str, str]) -> dict:
    return {k: mapping.get(v, v) if k in ("src", "dst") else v for k, v in spec.items()}


@contextmanager
def same_ip_id(probe: Probe):
    """Every frame sent in the block carries one IP identification, so fragments make one datagram."""
    probe.injector.next_ident = lambda: PINNED_IP_ID  # shadows the method on this instance only
    try:
        yield
    finally:
        del probe.injector.next_ident


# --- answers ------------------------------------------------------------------------------------

def decided_by(rules: Counter, policies: Counter, rs: Ruleset, hook: str) -> tuple[str | None, str]:
    """The verdict and the rule (and its line in the seed) that filter counters show decided a packet."""
    for t, c, n in sorted(rules):
        rule = rs.tables[t].chains[c].rules[n - 1]
        if rule.target is not None and rule.target.name in TERMINAL:
            return rule.target.name, f"by {c} {n} (line {rule.origin.line})"
    if policies:
        returns = [f"{c} {n} RETURN" for t, c, n in sorted(rules)
                   if (r := rs.tables[t].chains[c].rules[n - 1]).target is not None and r.target.name == "RETURN"]
        return rs.tables["filter"].chains[hook].policy, f"by {hook} policy" + (
            f" (after {', '.join(returns)})" if returns else "")
    return None, "(never reaches filter)"


def state_tag(ctstate: str | None, shown: bool) -> str:
    return f" [{ctstate or 'no state'}]" if shown else ""


def compress(answers: list[str]) -> str:
    out: list[list] = []
    for a in answers:
        if out and out[-1][0] == a:
            out[-1][1] += 1
        else:
            out.append([a, 1])
    return "; ".join(a + (f" ×{n}" if n > 1 else "") for a, n in out)


def short(spec: dict) -> str:
    def port(key):
        return f":{spec[key]}" if key in spec else ""
    s = f"{spec['proto']} {spec['src']}{port('sport')} > {spec['dst']}{port('dport')}"
    if spec["proto"] == "tcp":
        s += " " + (",".join(spec["tcp_flags"]) or "(no flags)")
    if spec["proto"] == "icmp":
        s += f" type {spec['icmp_type']}"
    if spec.get("frag_offset") or spec.get("more_fragments"):
        s += f" frag {spec.get('frag_offset', 0)}{' MF' if spec.get('more_fragments') else ''} len {spec['length']}"
    return s


def explain_cli(path: Path, args: list[str]) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(path), "--from", "script", "--json",
                        *args], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def same_answer(a: dict, b: dict) -> bool:
    return (a["verdict"], a["ctstate"], a["matched"]) == (b["verdict"], b["ctstate"], b["matched"])


@dataclass
class Row:
    question: str
    packet: str
    stockade: list[str] = field(default_factory=list)
    kernel: list[str] = field(default_factory=list)


# --- the test -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEED_QUESTIONS, ids=lambda s: s.prefix)
def test_seed_questions(kernel_ok, seed: Seed, tmp_path, capsys):
    [path] = SEEDS.glob(f"{seed.prefix}_*.txt")
    b = read_script(path.read_text(encoding="utf-8"), str(path))
    rs_seed = b.rulesets[Family.IPV4]
    errors = {(d.code, d.origin.line) for d in b.diagnostics if d.severity == "error"}
    notes = []
    for meant, code, line in seed.facts:
        assert (code, line) in errors, f"{meant}: expected a {code} error at line {line}, got {sorted(errors)}"
        notes.append(f"{meant}: {code} error, line {line}")
    rules = [(c.name, n, r) for t in rs_seed.tables.values() for c in t.chains.values()
             for n, r in enumerate(c.rules, 1)]
    for name in seed.absent:
        assert not [r for _, _, r in rules if any(m.name == name for m in r.matches)], f"a -m {name} rule is loaded"

    text = render_save(rs_seed)
    mapping = own_addresses(text, seed.server)
    text = lab_text(text, mapping)
    lb = read_save(text, "lab", Family.IPV4)
    assert not [d for d in lb.diagnostics if d.severity == "error"], text
    rs_lab = lb.rulesets[Family.IPV4]
    # the lab holds what a kernel can (render/save.py kernel_rules: no stand-ins for what stockade could
    # not read); the seed model is compared with it on the same rules, and `explain` with the whole model
    rs_kernel = replace(rs_seed, tables={n: replace(t, chains={c: replace(ch, rules=kernel_rules(ch))
                                                               for c, ch in t.chains.items()})
                                         for n, t in rs_seed.tables.items()})
    sim_lab, sim_seed, sim_model = Simulator(rs_lab), Simulator(rs_kernel), Simulator(rs_seed)
    assert sim_lab.conntrack == sim_seed.conntrack
    observe_ct = sim_lab.conntrack  # only where the ruleset turns conntrack on anyway

    asked: list[dict] = []  # every packet as stockade is asked it (seed addresses, with t)
    answers: list[dict] = []  # the simulator's answers on the imported model
    rows: list[Row] = []
    problems: list[str] = []
    with Probe(forward=False) as probe:
        probe.load(Family.IPV4, text, observe_ct=observe_ct)
        t0 = time.monotonic()
        for q in seed.questions:
            wire = q.wire or q.packets
            kinds = list(dict.fromkeys(short(p) for p in wire))
            row = Row(q.question, (f"{len(wire)} × " if len(kinds) == 1 < len(wire) else "") + " / ".join(kinds)
                      + ("; stockade is asked the reassembled datagram for the last" if q.wire else ""))
            with same_ip_id(probe) if q.wire else nullcontext():
                for spec, sent, expect in zip(q.packets, wire, q.expect, strict=True):
                    spec = spec | {"t": round(time.monotonic() - t0, 6)}
                    pkt = from_json(lab_packet(spec, mapping))
                    obs = probe.send(from_json(lab_packet(sent, mapping)))
                    res = sim_lab.run(pkt)
                    res_seed = sim_seed.run(from_json(spec))
                    asked.append(spec)
                    answers.append(sim_model.run(from_json(spec)).to_json())

                    exp = expectation(res, rs_lab, pkt.hook)
                    _, sim_rule = decided_by(exp.rules, exp.policies, rs_kernel, pkt.hook)
                    k_verdict, k_rule = decided_by(obs.filter.rules, obs.filter.policies, rs_kernel, pkt.hook)
                    k_verdict = "ACCEPT" if obs.passed else (k_verdict if k_verdict in ("DROP", "REJECT") else "DROP")
                    row.stockade.append(f"{res.verdict} {sim_rule}{state_tag(res.ctstate, observe_ct)}")
                    row.kernel.append(f"{k_verdict} {k_rule}{state_tag(obs.ctstate, observe_ct)}")

                    where = f"seed {seed.prefix}, {q.question!r}, packet {len(row.kernel)} {short(spec)}"
                    diffs = disagreements(exp, obs, observe_ct)
                    if res.verdict != k_verdict:
                        diffs.append(f"verdict: simulator {res.verdict}, kernel {k_verdict}")
                    if not same_answer(res.to_json(), res_seed.to_json()):
                        diffs.append(f"address mapping changed the answer: lab {res.to_json()}, "
                                     f"seed {res_seed.to_json()}")
                    if k_verdict != expect:
                        diffs.append(f"expected {expect}, the kernel said {k_verdict}")
                    problems += [f"{where}: {d}" for d in diffs]
            rows.append(row)
        elapsed = time.monotonic() - t0
        counters = probe.read(Family.IPV4).rules
        for chain, n, _ in [x for x in rules if x[2].fragment and observe_ct]:  # with conntrack, `-f` never matches
            kernel_f = counters[("filter", chain, n)]
            sim_f = sum(m == {"table": "filter", "chain": chain, "rule": n} for a in answers for m in a["matched"])
            notes.append(f"`-f` rule {chain} {n}: its counter after all packets is {kernel_f} in the kernel, "
                         f"{sim_f} in the simulator")
            if kernel_f or sim_f:
                problems.append(f"seed {seed.prefix}: `-f` rule {chain} {n} matched: kernel {kernel_f}, "
                                f"simulator {sim_f}")

    # The command answers the same, on the seed file itself: every packet in order, and the first alone.
    batch = tmp_path / "packets.jsonl"
    batch.write_text("".join(json.dumps(p) + "\n" for p in asked))
    cli = explain_cli(path, ["--packets", str(batch)])
    assert len(cli) == len(answers), cli
    cli_same = 0
    for n, (c, a) in enumerate(zip(cli, answers), 1):
        if same_answer(c, a):
            cli_same += 1
        else:
            problems.append(f"seed {seed.prefix}: explain --packets line {n}: {c}, simulator {a}")
    [one] = explain_cli(path, ["--packet", json.dumps(asked[0])])
    if not same_answer(one, answers[0]):
        problems.append(f"seed {seed.prefix}: explain --packet {asked[0]}: {one}, simulator {answers[0]}")

    with capsys.disabled():
        print(f"\n\nseed {path.name}: server " +
              (", ".join(f"{s} -> {lab}" for s, lab in mapping.items()) or f"address not given: {LAB}") +
              f"; conntrack {'on' if observe_ct else 'off'}; {len(asked)} packets in {elapsed:.2f} s; "
              f"`stockade explain --json` gave the simulator's answer for {cli_same} of {len(asked)}")
        print("| seed | question | packet | stockade explain | kernel |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {seed.prefix} | {r.question} | {r.packet} | {compress(r.stockade)} | {compress(r.kernel)} |")
        for note in notes:
            print(f"  note: {note}")
    assert not problems, "\n".join(problems)
