"""lint's search of hooks too large for classes (findings/coverage.py `inside_one`) against the simulator: on
real dumps, every rule it says an earlier rule takes whole is met by none of its packets."""
from __future__ import annotations

import random

import pytest

from stockade.model.netfilter import FILTER_HOOKS as HOOKS
from stockade.model.ranges import intersect
from stockade.model.space import SRC
from stockade.parse.read import read
from stockade.semantics.diff import fresh
from stockade.semantics.findings.context import Analysis
from stockade.semantics.findings.coverage import inside_one

from .corpus import NET_NETWORK

TUM = NET_NETWORK / "configs_chair_for_Network_Architectures_and_Services"
DUMPS = [TUM / "iptables-save-2016-06-27_16-29-01", TUM / "ip6tables-save-2016-06-27_16-29-01",
         NET_NETWORK / "configs_sqrl_shorewall" / "2015_aug_iptables-save"]


@pytest.mark.parametrize("dump", DUMPS, ids=lambda p: p.name)
def test_rules_held_by_an_earlier_one_are_never_met(dump):
    rng = random.Random(7)
    b = read(dump.read_text(), dump.name, "save")
    held_somewhere = 0
    for rs in b.rulesets.values():
        a = Analysis(rs, dump.name)
        for hook in HOOKS:
            ents = a.entries(hook)
            for i in inside_one(ents, a.space.universe[SRC][0][1]):
                held_somewhere += 1
                ref = ents[i].flat.rule
                for start in a.space.start_boxes(hook):
                    box = {d: intersect(v, ents[i].cons.dims[d]) if d in ents[i].cons.dims else v
                           for d, v in start.items()}
                    if not all(box.values()):
                        continue
                    for _ in range(3):  # a packet anywhere in the rule's region
                        pick = {}
                        for d, v in box.items():
                            lo, hi = rng.choice(v)
                            x = rng.randint(lo, hi)
                            pick[d] = ((x, x),)
                        fresh(a.sim)
                        trace = a.sim.run(a.space.packet(pick, hook)).trace
                        assert not [t for t in trace if (t.get("table"), t.get("chain"), t.get("rule"))
                                    == (ref.table, ref.chain, ref.number)], (hook, ref, trace[-3:])
    assert held_somewhere  # the dumps do repeat rules
