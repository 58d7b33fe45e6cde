"""Helpers of the simulator tests: small rulesets run through a Simulator, packets given in the short
form (`hits`, `seq`) or as JSON specs (`run`, `verdict`, `rule_hits`)."""
from __future__ import annotations

from stockade.model import Family
from stockade.model.packet import from_json, from_short
from stockade.parse.save import read_save
from stockade.semantics.simulate import Simulator

V4, V6 = Family.IPV4, Family.IPV6
A, B, D = "198.51.100.7", "198.51.100.8", "192.0.2.1"
PEERS_V4 = {"src": "192.0.2.2", "dst": "192.0.2.1", "iif": "eth0"}
PEERS_V6 = {"src": "2001:db8::2", "dst": "2001:db8::1", "iif": "eth0"}


def simulator(rules: str, family: Family = V4, table: str = "filter") -> Simulator:
    chains = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "raw": ("PREROUTING", "OUTPUT")}[table]
    text = f"*{table}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains) + rules.strip() + "\nCOMMIT\n"
    b = read_save(text, "test", family)
    errors = [str(d) for d in b.diagnostics if d.severity == "error"]
    assert not errors, errors
    return Simulator(b.rulesets[family])


def hits(sim: Simulator, spec: str) -> list[int] | None:
    """The numbers of the rules that matched, or None when the simulator answered UNKNOWN."""
    res = sim.run(from_short(spec))
    if res.verdict == "UNKNOWN":
        return None
    return [m["rule"] for m in res.matched]


def seq(sim: Simulator, spec: str, times: list[float]) -> list[bool | None]:
    """Whether rule 1 matched for the same packet sent at each time (None: UNKNOWN)."""
    out = []
    for t in times:
        got = hits(sim, f"{spec} t {t}")
        out.append(None if got is None else 1 in got)
    return out


def rules(*lines: str, table: str = "filter", family: Family = Family.IPV4, sets: tuple = ()) -> Simulator:
    b = read_save(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n", "t", family)
    errors = [str(d) for d in b.diagnostics if d.severity == "error"]
    assert not errors, errors
    rs = b.rulesets[family]
    for s in sets:
        rs.sets[s.name] = s
    return Simulator(rs)


def udp(**kw) -> dict:
    return {"proto": "udp", "sport": 5353, "dport": 53, **(PEERS_V6 if ":" in kw.get("src", "") else PEERS_V4), **kw}


def run(sim: Simulator, **spec):
    return sim.run(from_json(spec))


def verdict(sim: Simulator, **spec) -> str:
    return run(sim, **spec).verdict


def rule_hits(sim: Simulator, **spec) -> list[int]:
    """The INPUT (or FORWARD) rules whose matches held, for rulesets of bare counting rules."""
    return [m["rule"] for m in run(sim, **spec).matched]
