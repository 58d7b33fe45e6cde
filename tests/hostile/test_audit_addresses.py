"""`audit` maps the ruleset's host addresses into documentation ranges (issue 14, low): past 255 hosts
the mapping ran off the end of its /24 (198.51.100.256), the lab's copy failed to load those rules and
dropped them silently. Every rule must reach the lab, or the audit must refuse, saying where."""
from __future__ import annotations

import pytest

from stockade.lab import audit
from stockade.lab.hosts import documentation
from stockade.model import Family
from stockade.parse.read import read
from stockade.parse.save import read_save
from stockade.render.save import render_save

from .conftest import refused, stockade


def _dump(hosts: int, flag: str) -> str:
    rules = [f"-A INPUT {flag} 10.{n >> 8}.{n & 255}.1 -p tcp --dport 22 -j ACCEPT" for n in range(hosts)]
    # documentation addresses the ruleset itself uses must not be handed out again
    rules += ["-A INPUT -s 198.51.100.100 -j DROP", "-A INPUT -d 203.0.113.11 -j DROP"]
    return "*filter\n:INPUT DROP [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"


def test_mapping_300_hosts_keeps_every_rule():
    text = render_save(read(_dump(300, "-s"), "r.v4").rulesets[Family.IPV4])
    mapped, mapping = audit.map_addresses(text, [])
    lab = read_save(mapped, "lab", Family.IPV4)
    assert not [d for d in lab.diagnostics if d.severity == "error"]
    assert len(lab.rulesets[Family.IPV4].tables["filter"].chains["INPUT"].rules) == 302
    assert len(set(mapping.values())) == 300 and all(documentation(a) for a in mapping.values())


@pytest.mark.parametrize("hosts, flag", [(300, "-s"), (240, "-d")])
def test_every_rule_reaches_the_lab_with_distinct_addresses(hosts, flag):
    b = read(_dump(hosts, flag), "r.v4")
    rulesets, servers, notes = audit.lab_rulesets(b, "r.v4")
    chain = rulesets[Family.IPV4].tables["filter"].chains["INPUT"]
    assert len(chain.rules) == hosts + 2
    mapped = [str(r.src.addr if flag == "-s" else r.dst.addr) for r in chain.rules[:hosts]]
    assert len(set(mapped)) == hosts  # no two hosts merged
    assert not {"198.51.100.100/32", "203.0.113.11/32"} & set(mapped)
    assert len(notes) == hosts


def test_more_hosts_than_addresses_is_refused_at_the_first_unmapped_rule(tmp_path):
    hosts = len(audit.OTHER_POOL) + 5
    with pytest.raises(audit.Unmappable) as e:
        audit.lab_rulesets(read(_dump(hosts, "-s"), "r.v4"), "r.v4")
    # the pool less the one address the ruleset uses itself: the 310th host has none left
    assert str(e.value.diagnostic.origin) == f"r.v4:{3 + len(audit.OTHER_POOL) - 1}:1"
    p = tmp_path / "r.v4"
    p.write_text(_dump(len(audit.OWN_POOL) + 1, "-d"))
    err = refused(stockade("audit", str(p)), 2)
    assert "error: the lab has no documentation address left for" in err
