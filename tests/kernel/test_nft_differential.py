"""The nftables simulator against the real kernel, rule by rule, with iptables-nft at the same hooks.

Each random ruleset (tests/kernel/nftgen.py) is two or three native tables (inet plus ip/ip6) whose
base chains share the prerouting, input and forward hooks at distinct priorities, loaded with `nft -f`
into the server namespace of a lab.differential.Probe, beside an iptables-nft filter table at priority 0
(random rules from rulegen.py in every third ruleset, empty chains otherwise). The kernel's own
listing (`nft -j list ruleset`) is what stockade reads (parse/nft.py), so the reader is under test too.
Real frames are sent; the simulator (semantics/nft.py, with the iptables model composed in) must name
exactly the nft `counter`s that moved, the iptables rules and policy that counted, and the verdict;
also the conntrack state the probe's observers see at -150, unless the ruleset holds a `notrack`
(which may change that state later on the packet's way).

>= 100 rulesets and 5,000 packets (seed fixed under CI=true, random otherwise, always printed;
STOCKADE_SEED overrides it, STOCKADE_NFT_RULESETS / STOCKADE_NFT_PACKETS scale it).
"""
from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import pytest

from stockade.lab.differential import Probe
from stockade.lab.inject import frame
from stockade.model import Family
from stockade.model.nftables import IPTABLES_NFT
from stockade.model.packet import Packet
from stockade.parse.nft import read_nft_json
from stockade.parse.save import read_save
from stockade.semantics.nft import NftResult, NftSimulator

from .conftest import lasting_probe
from .nftgen import NftGen
from .rulegen import Features, GenRuleset, PacketGen, RulesetGen

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (20261207 if CI else random.randrange(1, 2**31)))
# CI checks a fixed sample (its seed is fixed) of half the size, to stay within its time on a slower machine
# (this test took 227 s of a 41-minute run there); other runs draw new rulesets each time.
RULESETS = int(os.environ.get("STOCKADE_NFT_RULESETS", "50" if CI else "100"))
PACKETS = int(os.environ.get("STOCKADE_NFT_PACKETS", "50"))  # per ruleset
# Rulesets to draw but not run: each ruleset replaces every table of the one before, so a long run can be
# checked in parts (STOCKADE_NFT_SKIP=50 with the same seed runs exactly the second half).
SKIP = int(os.environ.get("STOCKADE_NFT_SKIP", "0"))
SHOWN = 6
EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=True) as p:
        if p.server.run(["nft", "--version"], check=False).returncode != 0:
            pytest.fail("nft is not installed", pytrace=False)
        yield p


def nft_counters(probe: Probe) -> tuple[str, Counter]:
    """The kernel's listing (`nft -j list ruleset`) and the packets each native rule's counter holds."""
    text = probe.server.run(["nft", "-j", "list", "ruleset"]).stdout
    counts: Counter = Counter()
    for item in json.loads(text)["nftables"]:
        rule = item.get("rule")
        if rule and not (rule["family"] in ("ip", "ip6") and rule["table"] in IPTABLES_NFT):
            for stmt in rule["expr"]:
                if isinstance(stmt.get("counter"), dict):
                    counts[(rule["family"], rule["table"], rule["chain"], rule["handle"])] += stmt["counter"]["packets"]
    return text, counts


def expected(res: NftResult, hook: str) -> tuple[Counter, Counter, Counter]:
    """(nft counters, iptables filter rules, iptables filter policies) the simulator says move."""
    nft = Counter((c["family"], c["table"], c["chain"], c["handle"]) for c in res.counted)
    ipt = Counter(("filter", m["chain"], m["rule"]) for m in res.matched if "rule" in m and m["table"] == "filter")
    pol = Counter(("filter", s["chain"]) for s in res.trace if "policy" in s and "family" not in s
                  and s["table"] == "filter")
    return nft, ipt, pol


def test_random_nft_rulesets_agree_with_the_kernel(probe, capsys):
    rng = random.Random(SEED)
    feats = {fam: Features.detect(fam) for fam in Family}
    failures: list[str] = []
    kinds: Counter = Counter()
    packets = abstained = composed = 0
    start = time.monotonic()
    for i in range(RULESETS):
        fam = Family.IPV4 if i % 2 == 0 else Family.IPV6
        ngen = NftGen(rng, fam).ruleset()
        with_ipt = i % 3 == 0
        ipt = RulesetGen(rng, fam, feats[fam], combined_ports_bug=True).ruleset() if with_ipt else None
        ipt_text = ipt.text if ipt else EMPTY_FILTER
        observe_ct = rng.random() < 0.5
        anchors = ngen.anchors
        if ipt:
            for k in ("src", "dst", "ports", "icmp"):
                getattr(anchors, k).extend(getattr(ipt.anchors, k))
        pg = PacketGen(rng, GenRuleset(fam, "", anchors, False))
        if i < SKIP:
            for _ in range(PACKETS):
                pg.packet()
            continue
        composed += with_ipt
        probe.load(fam, ipt_text, observe_ct=observe_ct)
        probe.server.run(["nft", "-f", "-"], input=ngen.text)
        listing, before = nft_counters(probe)
        nft_rs = read_nft_json(listing, "kernel").native()
        b = read_save(ipt_text, "iptables", fam)
        sim = NftSimulator(nft_rs, {fam: b.rulesets[fam]}, conntrack={fam} if observe_ct else None)
        t0 = time.monotonic()
        for _ in range(PACKETS):
            pkt = pg.packet()
            pkt = pkt.with_(t=time.monotonic() - t0, length=wire_length(pkt))
            obs = probe.send(pkt)
            _, after = nft_counters(probe)
            moved = Counter({k: v - before[k] for k, v in after.items() if v != before[k]})
            before = after
            res = sim.run(pkt)
            packets += 1
            exp_nft, exp_ipt, exp_pol = expected(res, pkt.hook)
            diffs = []
            if res.verdict == "UNKNOWN" and pkt.frag_offset:
                abstained += 1
                continue
            if res.verdict == "UNKNOWN":
                diffs.append(f"undecided: {res.reason}")
            if exp_nft != moved:
                diffs.append(f"nft counters: simulator {sorted(exp_nft.items())}, kernel {sorted(moved.items())}")
            if exp_ipt != obs.filter.rules:
                diffs.append(f"iptables rules: simulator {sorted(exp_ipt.items())}, "
                             f"kernel {sorted(obs.filter.rules.items())}")
            if exp_pol != obs.filter.policies:
                diffs.append(f"iptables policies: simulator {sorted(exp_pol.items())}, "
                             f"kernel {sorted(obs.filter.policies.items())}")
            if (res.verdict == "ACCEPT") != obs.passed:
                diffs.append(f"verdict: simulator {res.verdict}, kernel {'ACCEPT' if obs.passed else 'not ACCEPT'}")
            if observe_ct and "notrack" not in ngen.text and obs.ctstate != res.ctstate and res.verdict != "UNKNOWN" and \
                    not (res.reason or "").startswith("martian") and obs.ctstate is not None:
                diffs.append(f"ctstate: simulator {res.ctstate}, kernel {obs.ctstate}")
            if diffs:
                kinds.update(d.split(":")[0] for d in diffs)
                failures.append(f"--- ruleset {i} (IPv{int(fam)}, iptables rules {with_ipt}, observers {observe_ct}):\n"
                                f"{ngen.text}{ipt_text if with_ipt else ''}packet: {json.dumps(pkt_json(pkt))}\n"
                                + "\n".join(diffs) + f"\nsimulator: {json.dumps(res.to_json())}")
    elapsed = time.monotonic() - start
    if os.environ.get("STOCKADE_DIFF_REPORT"):
        with open(os.environ["STOCKADE_DIFF_REPORT"], "w") as f:
            f.write("\n\n".join(failures))
    with capsys.disabled():
        print(f"\nnft differential: seed {SEED}, rulesets {SKIP}-{RULESETS - 1} ({composed} with iptables-nft rules "
              f"at the same hooks), {packets} packets ({abstained} undecidable later fragments), "
              f"{len(failures)} disagreements, {elapsed:.1f}s")
    assert not failures, (f"seed {SEED}: {len(failures)} of {packets} packets disagree ({dict(kinds)}); "
                          f"first {min(SHOWN, len(failures))}:\n\n" + "\n\n".join(failures[:SHOWN]))
    assert RULESETS < 100 or SKIP or (packets >= 5000 and composed >= 20)


def wire_length(pkt: Packet) -> int:
    """The IP length of the frame the injector sends: longer than `length` when the headers need it
    (an ICMP error quotes a datagram, neighbour discovery carries an address), and `meta length` and
    quotas count what is sent. Only ICMP bodies vary: other packets are sent `length` long."""
    if pkt.proto not in (1, 58):
        return pkt.length
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    f = Ether(frame(pkt, 1, "02:00:00:00:00:01"))
    return f[IP].len if pkt.family is Family.IPV4 else f[IPv6].plen + 40


def pkt_json(pkt) -> dict:
    from stockade.lab.inject import packet_spec
    return packet_spec(pkt) | {"hook": pkt.hook, "iif": pkt.iif, "oif": pkt.oif, "t": round(pkt.t, 3)}
