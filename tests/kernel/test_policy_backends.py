"""Issue 4, "Must show", in the kernel: the iptables and the nftables renderings of a policy accept the same
packets, and the ones the simulator says, for IPv4 and IPv6.

Two lab.differential Probes (two server namespaces): one runs the iptables rendering (`ipset restore`,
then iptables-restore and ip6tables-restore), the other the nftables one (`nft -f`). Each probe
packet of tests/test_policy_equivalence.plan (arriving packets; the harness cannot observe leaving
ones, as its raw OUTPUT drops them before filter) is sent, as a real frame, to both, and what the
kernel did is read from counters: the security INPUT counter (after the iptables filter table and
the nft inet table at priority 0 alike) says it passed; a packet that did not pass was REJECTed if
the server sent back a TCP RST or an ICMP(v6) destination unreachable (counted in raw OUTPUT ahead of
the harness's drop; the server gets a default route so replies reach that hook, and ICMP rate
limiting is off in its namespace), else DROPped. Both backends must agree packet by packet, and with
the simulator on the model (its REJECT read as the reply the kernel sends: none for a RST, an ICMP
error or when REJECT answers nothing); and corresponding IPv4 and IPv6 packets the policy does not
tell apart (test_policy_equivalence.family_specific) must get the same verdict from the kernel.

Policies: every example (interface in0) and STOCKADE_BACKEND_POLICIES (default 12) random ones from
the generator's `kernel` mode, seed as in test_policy_equivalence. The ftp helper rules the iptables
rendering puts in raw PREROUTING are loaded after the harness's sync rule.

Rate limits: conntrack is flushed before every packet, but hashlimit and limit buckets carry over.
Generated policies' limits hold 30 packets or more per source (SYN flood: 100), the plan sends each
source a few packets to each port, and before sending the test simulates the whole sequence on one
memory with no time passing and checks every verdict equals the packet's verdict on fresh memory, so
no bucket can run dry (refill only helps). `test_rate_limits_trip_alike` then exhausts per-source
buckets on purpose (hourly rates, so no refill during the test) and checks both backends drop the
same packets, in the same order, as the simulator and the policy say.
"""
from __future__ import annotations

import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import pytest

from stockade.kernel.netns import namespaces, process_prefix, remove
from stockade.lab.counters import Snapshot
from stockade.lab.differential import SYNC_PORT, SYNC_SRC, Probe, await_sync
from stockade.model import Family
from stockade.model.packet import Packet, from_json
from stockade.policy.compile import CompiledPolicy
from stockade.policy.output import render_outputs
from stockade.semantics.simulate import Result, Simulator

from ..test_policy_equivalence import (
    CI,
    SEED,
    GenPolicy,
    PolicyView,
    Spec,
    compile_gen,
    describe,
    example_policies,
    forget,
    plan,
    random_policy,
    sim_verdict,
    to6,
)

POLICIES = int(os.environ.get("STOCKADE_BACKEND_POLICIES", "12"))
SHOWN = 10
REPLIES = {Family.IPV4: ("-p tcp --tcp-flags RST RST", "-p icmp --icmp-type 3"),
           Family.IPV6: ("-p tcp --tcp-flags RST RST", "-p ipv6-icmp --icmpv6-type 1")}
EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def raw_table(fam: Family, prerouting: list[str]) -> str:
    """The harness's raw table (sync drop first, drop of all output last) with the reply counters and
    the rendering's own raw PREROUTING rules in between."""
    return ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f"-A PREROUTING -s {SYNC_SRC[fam]} -p udp -m udp --dport {SYNC_PORT} -j DROP\n"
            + "".join(f"{line}\n" for line in prerouting)
            + "".join(f"-A OUTPUT {m}\n" for m in REPLIES[fam]) + "-A OUTPUT -j DROP\nCOMMIT\n")


def split_raw(text: str) -> tuple[list[str], str]:
    """An iptables-save text's raw PREROUTING rules, and the text without its raw table."""
    rules, rest, table = [], [], None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table == "raw":
            if line.startswith("-A "):
                assert line.startswith("-A PREROUTING "), f"the rendering's raw rule would upset the harness: {line}"
                rules.append(line)
        else:
            rest.append(line)
        if line == "COMMIT":
            table = None
    return rules, "".join(f"{line}\n" for line in rest)


class Backend:
    """A server namespace running one rendering of a policy; `send` says what the kernel did."""

    def __init__(self, kind: str):
        self.kind = kind
        self.probe = Probe(forward=False)
        self.snap: dict[Family, Snapshot] = {}

    def __enter__(self) -> Self:
        p = self.probe.__enter__()
        try:
            p.server.run(["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"])
            p.server.run(["ip", "route", "add", "default", "dev", "in0"])
            p.server.run(["ip", "-6", "route", "add", "default", "dev", "in0"])
            for fam in Family:
                self.snap[fam] = p.load(fam, raw_table(fam, []))
        except BaseException:
            p.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.probe.close()

    @property
    def names(self) -> set[str]:
        t = self.probe.topology
        return {ns.name for ns in (t.client, t.server) if ns is not None}

    def load(self, c: CompiledPolicy) -> None:
        p = self.probe
        if self.kind == "nftables":
            p.server.run(["nft", "-f", "-"], input=render_outputs(c, "nftables")["ruleset.nft"])
            return
        out = render_outputs(c, "iptables")
        for fam in Family:  # nothing may refer to the previous policy's sets when they go
            p.load(fam, raw_table(fam, []) + EMPTY_FILTER)
        p.server.run(["ipset", "destroy"])
        p.server.run(["ipset", "restore"], input=out["ipsets"])
        for fam in Family:
            raw, rest = split_raw(out[f"rules.v{int(fam)}"])
            self.snap[fam] = p.load(fam, raw_table(fam, raw) + rest)

    def send(self, pkt: Packet, timeout: float = 5.0) -> str:
        """ACCEPT, DROP, REJECT/rst or REJECT/icmp, as the counters tell (cf. Probe.send)."""
        fam, p = pkt.family, self.probe
        p.server.run(["conntrack", "-F"], check=False)
        p.injector.send(pkt, p.sync_packet(fam))
        self.snap[fam], delta = await_sync(lambda: p.read(fam), self.snap[fam], timeout)
        if delta.rules[("security", "INPUT", 1)]:
            return "ACCEPT"
        if delta.rules[("raw", "OUTPUT", 1)]:
            return "REJECT/rst"
        return "REJECT/icmp" if delta.rules[("raw", "OUTPUT", 2)] else "DROP"


def kernel_view(res: Result) -> str:
    """What the kernel shows of a simulator verdict: a REJECT that answers nothing looks like DROP."""
    if res.verdict != "REJECT":
        return res.verdict
    note = next(n for n in res.notes if n.startswith("REJECT with "))
    if "nothing is sent back" in note:
        return "DROP"
    return "REJECT/rst" if sim_verdict(res) == "REJECT/tcp-reset" else "REJECT/icmp"


_names: set[str] = set()


@pytest.fixture(scope="module")
def backends(kernel_ok):
    if shutil.which("nft") is None:
        if CI:
            pytest.fail("nft is not installed", pytrace=False)
        pytest.skip("nft is not installed")
    with Backend("iptables") as ipt, Backend("nftables") as nft:
        _names.update(ipt.names | nft.names)
        yield ipt, nft
    left = [n for n in namespaces(process_prefix()) if n in _names]
    _names.clear()
    assert not left, f"the backends left namespaces behind: {left}"


@pytest.fixture(autouse=True)
def no_namespace_left():
    """Overrides conftest's check: the module's backends live across tests, anything else may not."""
    yield
    left = [n for n in namespaces(process_prefix()) if n not in _names]
    for name in left:
        remove(name)
    assert not left, f"namespaces left behind: {', '.join(left)}"


def run_both(backends, c: CompiledPolicy, packets: list[Packet]) -> tuple[list[str], list[str]]:
    """Load the policy into both backends and send them the same packets, side by side."""
    def one(b: Backend) -> list[str]:
        b.load(c)
        return [b.send(pkt) for pkt in packets]

    with ThreadPoolExecutor(2) as pool:
        ipt, nft = pool.map(one, backends)
    return ipt, nft


def _cases() -> list[tuple[str, int | None]]:
    return [(g.name, None) for g in example_policies()] + [(f"random-{i}", i) for i in range(POLICIES)]


TOTALS: dict[str, int] = {}


@pytest.mark.parametrize("name,index", _cases(), ids=[c[0] for c in _cases()])
def test_backends_accept_the_same_packets(backends, name, index, tmp_path, capsys):
    rng = random.Random(f"{SEED}-kernel-{name}")
    gp = next(g for g in example_policies() if g.name == name) if index is None else \
        random_policy(rng, name, kernel=True)
    c = compile_gen(gp, tmp_path)
    view = PolicyView(c, tmp_path)
    pairs = plan(view, rng, small=True, output=False)
    specs: list[Spec] = list(dict.fromkeys(s for pair in pairs for s in pair[:2] if s is not None))
    rng.shuffle(specs)  # families and kinds interleaved, as traffic would be
    packets = [s.packet() for s in specs]
    seq = {fam: Simulator(c.rulesets[fam]) for fam in Family}
    fresh = {fam: Simulator(c.rulesets[fam]) for fam in Family}
    expect = []
    for s, pkt in zip(specs, packets):
        res = seq[pkt.family].run(pkt)
        forget(fresh[pkt.family])
        alone = fresh[pkt.family].run(pkt)
        assert sim_verdict(res) == sim_verdict(alone), \
            f"the probe plan exhausts a rate limit at {describe(s)}; it must not (see the module docstring)"
        assert sim_verdict(res) == view.verdict(s), \
            f"policy {view.verdict(s)}, simulator {sim_verdict(res)}: {describe(s)}"
        expect.append(kernel_view(res))
    start = time.monotonic()
    ipt, nft = run_both(backends, c, packets)
    elapsed = time.monotonic() - start
    failures = [f"simulator {e}, iptables {a}, nftables {b}: {describe(s)}"
                for s, e, a, b in zip(specs, expect, ipt, nft) if not e == a == b]
    kernel = dict(zip(specs, ipt))  # the IPv4 and IPv6 verdicts of corresponding packets, in the kernel
    compared = [(s4, s6) for s4, s6, why in pairs if s4 and s6 and why is None]
    failures += [f"IPv4 {kernel[s4]}, IPv6 {kernel[s6]}:\n  {describe(s4)}\n  {describe(s6)}"
                 for s4, s6 in compared if kernel[s4] != kernel[s6]]
    for k, v in {"policies": 1, "packets": len(packets), "sent": 2 * len(packets), "v4/v6 pairs": len(compared),
                 "disagreements": len(failures)}.items():
        TOTALS[k] = TOTALS.get(k, 0) + v
    kinds = {v: expect.count(v) for v in sorted(set(expect))}
    with capsys.disabled():
        print(f"\n{name} (seed {SEED}): {len(packets)} packets to each backend in {elapsed:.1f}s, verdicts "
              f"{kinds}, {len(failures)} disagreements; totals {TOTALS}")
    assert not failures, (f"seed {SEED}, policy {name}:\n{gp.text}\n{len(failures)} of {len(packets)} packets "
                          f"disagree; first {min(SHOWN, len(failures))}:\n" + "\n".join(failures[:SHOWN]))


LIMITED = GenPolicy("limited", """\
[server]
interfaces = ["in0"]

[defaults]
closed = "reject"

[icmp]
ping = "limit"
rate = "1/hour"
burst = 2

[protect.syn_flood]
rate = "1/hour"
burst = 4

[[allow]]
service = "2222/tcp"
limit = "3/hour"

[[allow]]
service = "80/tcp"
""", {})


def test_rate_limits_trip_alike(backends, tmp_path):
    """Per-source buckets run dry after the same packet in both backends, the simulator and the policy."""
    c = compile_gen(LIMITED, tmp_path)
    sequence, expect = [], []
    for a in ("198.51.100.7", "198.51.100.8"):
        for fam, src, dst in ((4, a, "192.0.2.1"), (6, to6(a), "2001:db8::1")):
            syn = {"proto": "tcp", "src": src, "dst": dst, "tcp_flags": ["SYN"], "iif": "in0"}
            ping = {"proto": "icmp" if fam == 4 else "ipv6-icmp", "src": src, "dst": dst,
                    "icmp_type": 8 if fam == 4 else 128, "iif": "in0"}
            # SYN-flood bucket 4, service bucket 3 (new connections), ping bucket 2, all per source and family
            sequence += [syn | {"dport": 2222}] * 5 + [syn | {"dport": 80}] + [ping] * 3
            expect += ["ACCEPT"] * 3 + ["REJECT/rst"] * 3 + ["ACCEPT"] * 2 + ["REJECT/icmp"]
    packets = [from_json(s) for s in sequence]
    sims = {fam: Simulator(c.rulesets[fam]) for fam in Family}
    simulated = [kernel_view(sims[p.family].run(p)) for p in packets]
    ipt, nft = run_both(backends, c, packets)
    assert simulated == expect, "the simulator does not trip the limits where the policy says"
    assert ipt == expect, f"iptables: {ipt}"
    assert nft == expect, f"nftables: {nft}"
