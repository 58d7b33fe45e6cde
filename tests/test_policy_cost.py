"""Rules evaluated per packet for stockade's own rulesets (issue 15 item 7), from `explain` traces: every
example's established packets, each allowed service's first packet, and blocklisted sources; here the
compiled model (what iptables-restore loads), tests/kernel/test_policy_cost_nft.py the nftables table.

The limits (established 1, a new allowed connection at most 6, a blocked source at most 3) hold on every
example and back end except the cases in OVER, each with its exact figure and why. What is counted is
stockade's part: applied with iptables, INPUT holds one hook into stk-input (INPUT's rules here), after
the rules other tools put there (fail2ban inserts its jumps first, and a ban it makes still cuts an open
connection), so a live packet meets those and the hook too; nftables' table has its own base chains.
An established packet costs the same whatever its service, and no packet's cost depends on the
blocklist's size (a set lookup)."""
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


def costs(path: Path, runner=None) -> dict[str, list[tuple[str, int, str]]]:
    """Per kind of packet: (what, rules evaluated, verdict) for each family the policy has. `runner(cp)`
    gives the function that runs a packet (default: the iptables simulator on the compiled model)."""
    cp = compile_policy(path)
    out: dict[str, list[tuple[str, int, str]]] = {"established": [], "new allowed": [], "blocked source": []}
    send = (runner or (lambda c: Explainer(c.rulesets).run))(cp)
    for family, rs in sorted(cp.rulesets.items()):

        def run(what: str, kind: str, family=family, **spec) -> None:
            spec = {"hook": "INPUT", "iif": "eth0", "dst": SERVER[family], **spec}
            res = send(from_json(spec))
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
                    run(f"udp from {entry}", "blocked source", proto="udp", src=member_address(entry), dport=53)
    return out


LIMITS = {"established": 1, "new allowed": 6, "blocked source": 3}


def over(got: dict[str, list[tuple[str, int, str]]]) -> dict[str, int]:
    """Per kind, the largest figure measured where it is over the issue's limit."""
    return {kind: n for kind, limit in LIMITS.items()
            if (n := max((m for _, m, _ in got[kind]), default=0)) > limit}


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


def with_services(tmp_path: Path, n: int) -> Path:
    """A policy allowing `n` TCP services (custom ports) to everyone on one line, and SSH to an admin after it."""
    services = ", ".join(f'"{8000 + 2 * k}/tcp"' for k in range(n))
    path = tmp_path / f"services-{n}.toml"
    path.write_text(f'[server]\ninterfaces = ["eth0"]\n\n[groups]\nadmins = ["198.51.100.7", "2001:db8:1::/48"]\n\n'
                    f'[[allow]]\nservice = [{services}]\n\n[[allow]]\nservice = "ssh"\nfrom = ["admins"]\n')
    return path


def worst(got: dict) -> dict[str, int]:
    return {kind: max((n for _, n, _ in v), default=0) for kind, v in got.items()}


def test_cost_does_not_depend_on_service_count(tmp_path):
    """Services of one allow line are one multiport match (15 ports a rule in iptables; nft: one set,
    tests/kernel/test_policy_cost_nft.py with more), so 15 cost what 1 does."""
    assert worst(costs(with_services(tmp_path, 1))) == worst(costs(with_services(tmp_path, 15)))


# Where a figure is over the issue's limit, and why (backend, example, kind): (figure measured, reason).
NEW = ("a new connection meets, one rule each, the checks it can fail that are not gated at INPUT (bogons, the "
       "SYN-flood limit) and the allow lines of its protocol before its own (000: 1, 001: 4, 004: 1); the allow "
       "lines stay separate rules so that counters and logs stay per policy line, and iptables has no verdict map "
       "to dispatch on the port; 001 also meets its FTP helper rule (iptables: in raw, as below; nft: INPUT's "
       "second rule, which every packet but an established one meets)")
NFT_GATE = ("; nftables: a source check at INPUT (ban or blocklist sets, a family's own addresses) is a verdict map on "
            "meta nfproto to a one-rule gate chain of that family, so it costs one rule more than on iptables")
HELPER = ("iptables attaches the FTP helper only with CT in raw PREROUTING: the kernel refuses CT in any other table "
          "(filter, mangle: EINVAL, iptables-nft and legacy alike) and assigns no helper by port by itself (no "
          "nf_conntrack_helper sysctl), and raw runs before conntrack, so no rule there can skip established "
          "packets; nft attaches it in filter INPUT after the established rule (render/nft/layout.py)")
BANS6 = ("bans: the established accept leaves out banned sources, and an nft rule tests one family's addresses, so "
         "in the inet table IPv6 packets meet IPv4's established rule first")
UDP_GATE = ("a blocklisted source's UDP packet meets the gate of new TCP SYNs and its drop before the UDP gate and "
            "its drop (a TCP SYN: 3); the gates are one per protocol so that an allowed new connection meets no "
            "source check, and one gate for every protocol with a dispatch behind it costs each new connection a rule")
OVER = {
    ("nftables", "000-dns.toml", "new allowed"): (7, NEW + NFT_GATE),
    **{(b, "001-dev-web.toml", "new allowed"): (9, NEW) for b in ("iptables", "nftables")},
    ("nftables", "004-vps.toml", "new allowed"): (8, NEW + NFT_GATE + "; IPv6 also meets IPv4's established rule: "
                                                  + BANS6),
    ("iptables", "000-dns.toml", "blocked source"): (5, UDP_GATE),
    ("nftables", "000-dns.toml", "blocked source"): (6, "a blocklisted source fails INPUT's gate (the family verdict "
                                                        "map, then the gate chain) and meets the drop rule after it "
                                                        "(TCP: 4): iptables tests the sets in the jump rule itself, "
                                                        "nft's inet table cannot without IPv6 packets meeting IPv4's "
                                                        "rule; " + UDP_GATE),
    ("iptables", "001-dev-web.toml", "established"): (2, HELPER),
    ("nftables", "004-vps.toml", "established"): (2, BANS6),
}


def target_cases(backend: str) -> list:
    """(path, kind, (figure, reason) or None) for every example and kind."""
    return [pytest.param(path, kind, OVER.get((backend, path.name, kind)), id=f"{path.name}-{kind}")
            for path in EXAMPLES for kind in LIMITS]


def check_target(got: dict, path: Path, kind: str, known: tuple[int, str] | None) -> None:
    """The kind's figures within the issue's limit. A known case must measure exactly its recorded figure
    (a change either way fails, so OVER stays true) and is then reported as xfail with its reason."""
    worst = max((n for _, n, _ in got[kind]), default=0)
    if known is not None:
        assert worst == known[0], f"{path.name}: {kind}: measured {worst}, OVER records {known[0]}"
        pytest.xfail(f"issue 15 item 7, measured {worst} (limit {LIMITS[kind]}): {known[1]}")
    for what, n, _ in got[kind]:
        assert n <= LIMITS[kind], f"{path.name}: {kind} {what}: {n} rules evaluated (at most {LIMITS[kind]})"


@pytest.mark.parametrize(("path", "kind", "known"), target_cases("iptables"))
def test_issue_targets(path, kind, known):
    check_target(costs(path), path, kind, known)
