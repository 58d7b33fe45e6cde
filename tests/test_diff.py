"""Semantic diff: every class whose verdict changes is listed, and nothing listed is unchanged.

Checked against the simulator on packets drawn at random, both from inside every class the
diff examined and from the whole header space, for each seed script against the example
policy written for it, and on small hand-made pairs.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.commands.inputs import load
from stockade.model import Family
from stockade.parse.read import read
from stockade.semantics.cells import DIMS
from stockade.semantics.diff import semantic_diff
from stockade.semantics.simulate import Simulator

from .corpus import SEEDS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Which example policy was written for which seed (each example's first comment line says so).
PAIRS = {"000": "000-dns.toml", "001": "001-dev-web.toml", "002": "002-mail.toml",
         "003": "003-web-mail-ssh-dns.toml", "004": "004-vps.toml"}


def seed(prefix: str) -> Path:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path


def test_pairs_are_the_examples_own():
    for prefix, example in PAIRS.items():
        assert f"seed {prefix}" in (EXAMPLES / example).read_text(encoding="utf-8").splitlines()[0]


def point(rng: random.Random, box: dict) -> dict:
    """A random packet class of one packet: a random value of every dimension of `box`."""
    out = {}
    for d in DIMS:
        lo, hi = rng.choice(box[d])
        v = rng.choice((lo, hi, rng.randint(lo, hi)))
        out[d] = ((v, v),)
    return out


def contains(c, pt: dict) -> bool:
    return c.covers({d: pt[d][0][0] for d in DIMS})


def verdict(sim: Simulator, pkt) -> str:
    sim.memory.clear()  # a first packet, as the diff's example packets are
    return sim.run(pkt).verdict


def check(old: dict, new: dict, samples: int = 300, seed_: int = 5) -> object:
    d = semantic_diff(old, new, keep=True)
    rng = random.Random(seed_)
    empty = {f: read("*filter\nCOMMIT\n", "-", "save", f).rulesets[f] for f in Family}
    sims = {f: (Simulator(old.get(f) or empty[f]), Simulator(new.get(f) or empty[f])) for f in d.families}
    # Nothing listed is unchanged: the example packet really gets the listed verdicts.
    for c in d.changes:
        so, sn = sims[c.family]
        assert (verdict(so, c.example), verdict(sn, c.example)) == (c.old.verdict, c.new.verdict), c.text()
        assert c.old.key != c.new.key
    # Every change is explained: packets drawn from every class (and from the start boxes, i.e. the
    # whole space) get verdicts the class allows, and a packet whose verdict changes lies in a listed change.
    classes = d.changes + d.unchanged
    for c in rng.sample(classes, min(len(classes), samples)) + classes[:0]:
        so, sn = sims[c.family]
        space = d.spaces[c.family]
        for _ in range(2):
            pt = point(rng, rng.choice(c.parts))
            pkt = space.packet(pt, c.hook)
            vo, vn = verdict(so, pkt), verdict(sn, pkt)
            assert vo in c.old.may and vn in c.new.may, (c.text(), pkt)
            if vo != vn and c.old.key == c.new.key:
                assert len(c.old.may | c.new.may) > 1, (c.text(), pkt)  # three-valued: depends on a rule
            if vo != vn:
                assert any(x.family == c.family and x.hook == c.hook and contains(x, pt) for x in d.changes)
    # Without keep, semantic_diff may cut classes where the two walks part (diff.walks): other
    # classes, the same changed packets with the same outcomes.
    fast = semantic_diff(old, new)
    for x, y in ((fast.changes, d.changes), (d.changes, fast.changes)):
        for c in x:
            for part in c.parts[:4]:
                pt = point(rng, part)
                hits = [h for h in y if h.family == c.family and h.hook == c.hook and contains(h, pt)]
                assert [(h.old.key, h.new.key) for h in hits] == [(c.old.key, c.new.key)], c.text()
    for fam in d.families:
        space = d.spaces[fam]
        so, sn = sims[fam]
        for hook in ("INPUT", "FORWARD", "OUTPUT"):
            starts = space.start_boxes(hook)
            for _ in range(samples // 3):
                pt = point(rng, rng.choice(starts))
                (home,) = [c for c in classes if c.family == fam and c.hook == hook and contains(c, pt)]
                pkt = space.packet(pt, hook)
                vo, vn = verdict(so, pkt), verdict(sn, pkt)
                assert vo in home.old.may and vn in home.new.may, (home.text(), pkt)
    return d


@pytest.mark.parametrize("prefix", sorted(PAIRS))
def test_seed_against_its_example_policy(prefix: str):
    old = load(str(seed(prefix)), whole=True).rulesets
    new = load(str(EXAMPLES / PAIRS[prefix]), whole=True).rulesets
    started = time.monotonic()
    d = check(old, new)
    assert d.changes
    assert time.monotonic() - started < 30
    assert d.seconds < 5, d.seconds  # the diff itself: a few seconds on seed-sized rulesets


def rules(*lines: str, policy: str = "DROP") -> dict:
    text = f"*filter\n:INPUT {policy} [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" + \
        "".join(f"{x}\n" for x in lines) + "COMMIT\n"
    return read(text, "t.rules", "save", Family.IPV4).rulesets


BASE = ("-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT", "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -p tcp --dport 22 -j ACCEPT")


def test_closing_a_port_reads_as_one_change():
    d = check(rules(*BASE, "-A INPUT -p tcp --dport 25 -j ACCEPT"), rules(*BASE))
    lines = d.text().splitlines()
    assert lines[0] == "IPv4 INPUT:" and len(d.changes) == 1
    assert lines[1] == "  tcp/25 from anywhere: ACCEPT \u2192 DROP (also INVALID, NEW without SYN, INVALID NULL packets)"


def test_moved_interface_jump():
    """The jump moved above the web rule (as between two TUM dumps): only the blocked sources on
    eth1 change, with or without keep (refine or the aligned walks)."""
    block = (":BLOCK - [0:0]", "-A BLOCK -s 198.51.100.0/24 -j DROP", "-A BLOCK -s 203.0.113.0/24 -j DROP")
    web, jump = "-A INPUT -p tcp --dport 80 -j ACCEPT", "-A INPUT -i eth1 -j BLOCK"
    d = check(rules(*block, *BASE, web, jump), rules(*block, *BASE, jump, web))
    fast = semantic_diff(rules(*block, *BASE, web, jump), rules(*block, *BASE, jump, web))
    assert {c.text() for c in fast.changes} == {"tcp/80 from 198.51.100.0/24, 203.0.113.0/24 on eth1"}
    assert {c.text() for c in d.changes} == {"tcp/80 from 198.51.100.0/24, 203.0.113.0/24 on eth1"}


def with_raw(raw: tuple[str, ...], *lines: str) -> dict:
    """rules(*lines) with a raw table holding `raw` (PREROUTING and OUTPUT rules)."""
    text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + "".join(f"{x}\n" for x in raw) + "COMMIT\n"
    text += "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" + \
        "".join(f"{x}\n" for x in lines) + "COMMIT\n"
    return read(text, "t.rules", "save", Family.IPV4).rulesets


NOTRACK = ("-A PREROUTING -p tcp --dport 80 -j NOTRACK", "-A PREROUTING -s 198.51.100.0/24 -p udp -j CT --notrack",
           "-A OUTPUT -p udp --sport 53 -j NOTRACK")
UNTRACKED = "-A INPUT -m state --state UNTRACKED -j ACCEPT"


def test_filter_sees_what_raw_untracks_alike():
    """Both sides untrack tcp/80 and udp from 198.51.100.0/24: filter sees those packets UNTRACKED
    whatever state conntrack would have given them, so even established ones miss the established
    rule (on lo into INPUT, where the loopback rule takes them first, only INVALID ones are untracked)."""
    d = check(with_raw(NOTRACK, *BASE, UNTRACKED), with_raw(NOTRACK, *BASE))
    assert d.text().splitlines()[:3] == [
        "IPv4 INPUT:",
        "  tcp/80 from anywhere: ACCEPT \u2192 DROP (also ESTABLISHED, RELATED, INVALID, NEW without SYN, "
        "INVALID NULL packets)",
        "  udp from 198.51.100.0/24: ACCEPT \u2192 DROP (also ESTABLISHED, RELATED, INVALID packets)"]
    assert len(d.changes) == 2


def test_filter_sees_what_one_side_untracks():
    """Only the old side untracks: its packets of every state but lo's meet the UNTRACKED rule; the new
    side's established ones are accepted as such and its tcp/80 ones by the port rule."""
    old = with_raw(NOTRACK, UNTRACKED)
    new = with_raw((), "-A INPUT -m state --state ESTABLISHED -j ACCEPT", "-A INPUT -p tcp --dport 80 -j ACCEPT")
    d = check(old, new)
    lines = d.text().splitlines()
    assert "  tcp/80 from anywhere on lo: DROP \u2192 ACCEPT (also RELATED, NEW without SYN packets)" in lines
    assert "  udp from 198.51.100.0/24: ACCEPT \u2192 DROP (also RELATED, INVALID packets)" in lines
    assert "  tcp/all but 80 from anywhere: DROP \u2192 ACCEPT" in lines  # ESTABLISHED
    assert "  udp from anywhere but 198.51.100.0/24: DROP \u2192 ACCEPT" in lines
    back = check(new, old)
    assert sorted((c.text(), c.new.verdict, c.old.verdict) for c in back.changes) == \
        sorted((c.text(), c.old.verdict, c.new.verdict) for c in d.changes)


def test_identical_rulesets_have_no_changes():
    d = check(rules(*BASE), rules(*BASE))
    assert not d.changes and "no packet class changes" in d.text()


def test_rate_limit_is_three_valued_and_names_the_rule():
    d = check(rules(*BASE, "-A INPUT -p tcp --dport 80 -j ACCEPT"),
              rules(*BASE, "-A INPUT -p tcp --dport 80 -m limit --limit 5/sec -j ACCEPT"))
    (c,) = d.changes
    assert c.state.startswith("NEW") and c.text() == "tcp/80 from anywhere"
    assert c.old.verdict == c.new.verdict == "ACCEPT" and c.new.may == {"ACCEPT", "DROP"}
    assert "-m limit" in c.new.depends[0] and "t.rules:" in c.new.depends[0]


def test_unknown_match_says_which_rule():
    d = check(rules(*BASE), rules(*BASE, "-A INPUT -p tcp --dport 80 -m policy --dir in --pol none -j ACCEPT"))
    (c,) = d.changes
    assert c.text() == "tcp/80 from anywhere" and c.new.verdict == "UNKNOWN"
    assert c.new.may == {"UNKNOWN", "ACCEPT", "DROP"}
    assert c.new.depends == ("filter/INPUT rule 4 (t.rules:8:1): -m policy (not modelled)",)


def test_source_classes_and_order():
    d = check(rules(*BASE, "-A INPUT -s 198.51.100.0/24 -p udp --dport 161 -j ACCEPT"),
              rules(*BASE, "-A INPUT -p udp --dport 161 -j ACCEPT", "-A INPUT -p tcp --dport 23 -j REJECT"))
    lines = d.text().splitlines()
    assert lines[1].startswith("  udp/161 from anywhere but 198.51.100.0/24: DROP \u2192 ACCEPT")  # opened first
    assert lines[2].startswith("  tcp/23 from anywhere: DROP \u2192 REJECT")


def stockade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True, check=False)


def test_cli_diff_seed_and_policy_json():
    r = stockade("diff", str(seed("004")), str(EXAMPLES / PAIRS["004"]), "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["families"] == [4, 6] and doc["changed"] == len(doc["changes"]) > 0
    first = doc["changes"][0]
    assert set(first) == {"family", "hook", "state", "class", "text", "old", "new", "example"}
    assert set(first["old"]) == {"verdict", "may", "rule", "depends"}
    smtp = [c for c in doc["changes"] if c["text"].startswith("tcp/25,465") and c["state"] == "NEW"
            and c["family"] == 4 and c["hook"] == "INPUT"]
    assert smtp and smtp[0]["old"]["verdict"] == "DROP" and smtp[0]["new"]["verdict"] == "ACCEPT"


def test_cli_diff_same_file_and_bad_input(tmp_path):
    ex = str(EXAMPLES / PAIRS["002"])
    assert stockade("diff", ex, ex).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\ninterfaces = 3\n")
    r = stockade("diff", ex, str(bad))  # a policy with an error in it: errors in the input, exit 1 (as compile)
    assert r.returncode == 1 and "bad.toml:2" in r.stderr and "Traceback" not in r.stderr
    r = stockade("diff", ex, str(tmp_path / "missing"))
    assert r.returncode == 2 and "cannot read input" in r.stderr
    loop = tmp_path / "loop.rules"
    loop.write_text("*filter\n:INPUT DROP [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -j A\nCOMMIT\n")
    r = stockade("diff", str(loop), ex)
    # iptables-restore refuses the whole dump (ELOOP): a diff against part of it would mislead, exit 2
    assert r.returncode == 2 and "loop.rules:5:9: error: this rule makes chains loop: A -> A" in r.stderr and "Traceback" not in r.stderr
