"""Rules evaluated per packet for stockade's own rulesets (issue 15 item 7), from `explain` traces: every
example's established packets, each allowed service's first packet, and blocklisted sources.

What holds today: an established packet costs the same whatever its service, and no packet's cost
depends on the blocklist's size (a set lookup). The issue's targets (established 1, a new allowed
connection at most 6, a blocked source at most 3, whatever the number of services) need another layout
and are recorded as a strict xfail, so the test says so when they are met."""
import ipaddress
from pathlib import Path

import pytest

from stockade.model import Family
from stockade.model.packet import from_json
from stockade.policy.catalogue import resolve
from stockade.policy.compile import compile_policy
from stockade.semantics.explain import Explainer

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
ANYONE = {Family.IPV4: "203.0.113.9", Family.IPV6: "2001:db8:ffff::9"}
SERVER = {Family.IPV4: "192.0.2.10", Family.IPV6: "2001:db8::10"}


def member_address(entry: str) -> str:
    """An address inside a set entry (a network's first host after its base)."""
    net = ipaddress.ip_network(entry, strict=False)
    return str(net.network_address + (1 if net.num_addresses > 1 else 0))


def source(rs, group: str, family: Family) -> str | None:
    """An address of `group` in `family` from the compiled sets, or None if the group has none there."""
    if group == "everyone":
        return ANYONE[family]
    for kind in ("ip", "net"):
        s = rs.sets.get(f"stk-{group}-{kind}{int(family)}")
        if s is not None and s.members:
            return member_address(s.members[0])
    return None


def costs(path: Path) -> dict[str, list[tuple[str, int, str]]]:
    """Per kind of packet: (what, rules evaluated, verdict) for each family the policy has."""
    cp = compile_policy(path)
    out: dict[str, list[tuple[str, int, str]]] = {"established": [], "new allowed": [], "blocked source": []}
    for family, rs in sorted(cp.rulesets.items()):
        ex = Explainer(cp.rulesets)

        def run(what: str, kind: str, ex=ex, family=family, **spec) -> None:
            spec = {"hook": "INPUT", "iif": "eth0", "dst": SERVER[family], **spec}
            res = ex.run(from_json(spec))
            out[kind].append((f"IPv{int(family)} {what}", res.evaluated, res.verdict))

        for allow in cp.policy.allow:
            src = next((a for g in allow.sources if (a := source(rs, g, family))), None)
            if src is None:
                continue
            for name in allow.services:
                for port in resolve(name).ports:
                    flags = {"tcp_flags": ["SYN"]} if port.proto == "tcp" else {}
                    run(f"{name} {port}", "new allowed", proto=port.proto, src=src, dport=port.hi, **flags)
                    run(f"{name} {port}", "established", proto=port.proto, src=src, dport=port.hi,
                        state="ESTABLISHED", **({"tcp_flags": ["ACK"]} if port.proto == "tcp" else {}))
        for group in cp.policy.blocklist.inbound:
            for kind in ("ip", "net"):
                s = rs.sets.get(f"stk-{group}-{kind}{int(family)}")
                for entry in (s.members if s else [])[:3]:
                    run(f"from {entry}", "blocked source", proto="tcp", src=member_address(entry), dport=22,
                        tcp_flags=["SYN"])
    return out



@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_costs_are_measured_and_verdicts_right(path):
    got = costs(path)
    assert got["new allowed"] and got["established"], "the example allows nothing to measure"
    for kind, verdict in (("established", "ACCEPT"), ("new allowed", "ACCEPT"), ("blocked source", "DROP")):
        assert all(v == verdict for _, _, v in got[kind]), (kind, got[kind])
    # established: conntrack's answer comes first, so its cost is the same for every service
    assert len({n for _, n, _ in got["established"]}) == 1, got["established"]


def with_blocklist(tmp_path: Path, n: int) -> Path:
    """000-dns.toml with its blocklist file grown to `n` entries (documentation addresses only)."""
    ex = next(p for p in EXAMPLES if p.name == "000-dns.toml")
    entries = ["203.0.113.66", "203.0.113.128/25"] + [f"2001:db8:b::{k:x}" for k in range(n - 2)]
    (tmp_path / "000-blocked.txt").write_text("\n".join(entries) + "\n")
    (tmp_path / "000-dns.toml").write_text(ex.read_text())
    return tmp_path / "000-dns.toml"


def test_cost_does_not_depend_on_blocklist_size(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    a, b = costs(with_blocklist(small, 3)), costs(with_blocklist(large, 20_000))
    assert a["blocked source"] and a["new allowed"]
    for kind in ("established", "new allowed"):
        assert a[kind] == b[kind], kind
    by_family = [{(what.split()[0], n) for what, n, _ in got["blocked source"]} for got in (a, b)]
    assert by_family[0] == by_family[1] and len(by_family[0]) >= 2, by_family


@pytest.mark.xfail(strict=True, reason="issue 15 item 7: the layout has the hook jump, protections and services "
                                       "before a new connection's accept (measured: established 2-3, new allowed "
                                       "11-26, blocked source 8-9)")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_issue_targets(path):
    got = costs(path)
    for kind, limit in (("established", 1), ("new allowed", 6), ("blocked source", 3)):
        for what, n, _ in got[kind]:
            assert n <= limit, f"{path.name}: {kind} {what}: {n} rules evaluated (at most {limit})"
