"""Semantic diff on real dumps (issue 15 item 3): the diff of two consecutive TUM dumps, held point by
point to the simulator on both dumps.

Each sampled point is one packet of the header space (a value in every dimension). Its outcome on a
side is what semantic_diff would say of a class holding that packet alone: the simulator's verdict and
every verdict the flattened rules that admit it allow (diff.outcome). A point lies in a listed change
exactly when its two outcomes differ, and then they are the change's. Points are drawn from the
changes (each of their pieces) and from the whole space of each hook.
"""
from __future__ import annotations

import random

import pytest

from stockade.model import Family
from stockade.parse.read import read
from stockade.semantics.cells import DIMS, hook_entries, relation
from stockade.semantics.diff import _policy, outcome, semantic_diff
from stockade.semantics.simulate import Simulator

from .corpus import NET_NETWORK
from .test_diff import point

TUM = NET_NETWORK / "configs_chair_for_Network_Architectures_and_Services"
CONSECUTIVE = ("iptables-save-2015-05-15_14-14-46", "iptables-save-2015-05-15_15-23-41")


def dump(name: str) -> dict:
    text = (TUM / name).read_text().replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00")  # anonymised MACs
    return read(text, name).rulesets


@pytest.mark.skipif(not (TUM / CONSECUTIVE[0]).is_file(), reason="net-network corpus not present")
def test_consecutive_tum_dumps_point_by_point():
    old, new = (dump(n) for n in CONSECUTIVE)
    d = semantic_diff(old, new)
    assert d.changes
    rng = random.Random(15)
    fam = Family.IPV4
    space = d.spaces[fam]
    sides = [(Simulator(rs), rs) for rs in (old[fam], new[fam])]
    entries = {(i, hook): hook_entries(rs, hook, space) for i, (_, rs) in enumerate(sides)
               for hook in ("INPUT", "FORWARD", "OUTPUT")}

    def keys(hook: str, pt: dict) -> tuple:
        pkt = space.packet(pt, hook)
        return tuple(outcome(sim, pkt, [e for e in entries[(i, hook)] if relation(e.cons, pt)[0] != "none"],
                             _policy(rs, hook), pt).key for i, (sim, rs) in enumerate(sides))

    def listed(hook: str, pt: dict) -> list:
        at = {dim: pt[dim][0][0] for dim in DIMS}
        return [c for c in d.changes if c.family == fam and c.hook == hook and c.covers(at)]

    changes = [c for c in d.changes if c.family == fam]
    points = [(c.hook, point(rng, rng.choice(c.parts))) for c in rng.sample(changes, min(150, len(changes)))]
    for hook in ("INPUT", "FORWARD", "OUTPUT"):
        starts = space.start_boxes(hook)
        points += [(hook, point(rng, rng.choice(starts))) for _ in range(100)]
    differ = 0
    for hook, pt in points:
        (a, b), hits = keys(hook, pt), listed(hook, pt)
        assert len(hits) <= 1, (hook, pt)
        if a != b:
            differ += 1
            assert [(h.old.key, h.new.key) for h in hits] == [(a, b)], (hook, pt, a, b)
        else:
            assert not hits, (hook, pt, hits[0].text(), a)
    assert differ >= min(150, len(changes))  # every point drawn from a change did change
