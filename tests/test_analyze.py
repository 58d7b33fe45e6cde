"""stockade analyze: service matrices, three-valued answers, interface maps, open ports, and agreement
with the packet simulator on packets drawn from every class pair."""
import ipaddress
import json
import random

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.cli import main
from stockade.model import Family
from stockade.parse.read import read
from stockade.semantics.flatten import flatten
from stockade.semantics.ipassmt import IpAssmtError, parse_ipassmt
from stockade.semantics.matrix import Service, service_matrix, setting
from stockade.semantics.simulate import Simulator
from tests.corpus import NET_NETWORK, SEEDS, SEMANTICS

TEST_NET = ipaddress.ip_network("192.0.2.0/24")


def save(body: str) -> str:
    return "*filter\n" + body.strip() + "\nCOMMIT\n"


def run(tmp_path, text: str, *args: str):
    path = tmp_path / "rules"
    path.write_text(text)
    return CliRunner().invoke(main, ["analyze", str(path), *args])


def classes_as_sets(m: dict) -> dict[str, set[str]]:
    return {name: set(r) for name, r in m["classes"].items()}


def test_json_matrix_for_a_host_that_lets_one_network_in_by_ssh(tmp_path):
    res = run(tmp_path, save(":INPUT DROP [0:0]\n-A INPUT -s 192.0.2.0/24 -p tcp --dport 22 -j ACCEPT\n"
                             "-A INPUT -p tcp --dport 80 -j ACCEPT\n"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    ssh, web = out["service_matrix"]["tcp/22"], out["service_matrix"]["tcp/80"]
    # as source and as destination everyone but the test network is alike (martians reach nothing anyway)
    cls = classes_as_sets(ssh)
    net = next(n for n, r in cls.items() if r == {"192.0.2.0-192.0.2.255"})
    rest = next(n for n in cls if n != net)
    assert len(cls) == 2 and cls[rest] == {"0.0.0.0-192.0.1.255", "192.0.3.0-255.255.255.255"}
    assert sorted(map(tuple, ssh["edges"])) == [(net, net), (net, rest)] if net < rest else [(net, rest), (net, net)]
    assert ssh["always"] == ssh["edges"] and ssh["undecided"] == []
    # port 80: everyone reaches everyone, except the martian sources the kernel drops before INPUT
    wcls = classes_as_sets(web)
    martian = next(n for n, r in wcls.items() if "224.0.0.0-239.255.255.255" in r)
    assert wcls[martian] == {"0.0.0.0", "224.0.0.0-239.255.255.255", "255.255.255.255"} and len(wcls) == 2
    other = next(n for n in wcls if n != martian)
    assert sorted(map(tuple, web["edges"])) == sorted([(other, martian), (other, other)])
    assert "open_ports" in out and out["family"] == 4 and out["chain"] == "filter/INPUT"


def test_an_undecided_rate_limit_is_may_not_always_and_names_its_rule(tmp_path):
    res = run(tmp_path, save(":INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -m limit --limit 3/min -j ACCEPT\n"),
              "--json", "--service", "tcp/22", "--chain-only")
    m = json.loads(res.output)["service_matrix"]["tcp/22"]
    assert m["edges"] == [["a", "a"]] and m["always"] == []
    assert m["undecided"][0]["edge"] == ["a", "a"] and m["undecided"][0]["depends_on"][0].endswith(":3:1)")
    text = run(tmp_path, save(":INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -m limit --limit 3/min -j ACCEPT\n"),
               "--service", "tcp/22", "--chain-only").output
    assert "a -> a?" in text and "-m limit --limit 3/min" in text


def test_a_dropped_rate_limit_leaves_the_port_open_only_maybe(tmp_path):
    body = save(":INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -m recent --update --seconds 60 -j DROP\n")
    m = json.loads(run(tmp_path, body, "--json", "--service", "tcp/22", "--chain-only").output)["service_matrix"]
    assert m["tcp/22"]["edges"] == [["a", "a"]] and m["tcp/22"]["always"] == []


def test_an_interface_map_turns_interfaces_into_sources(tmp_path):
    (tmp_path / "map").write_text("eth1 192.0.2.0/24\neth0 all-but 192.0.2.0/24\n")
    body = save(":INPUT DROP [0:0]\n-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT\n")
    out = json.loads(run(tmp_path, body, "--json", "--service", "tcp/22", "--chain-only",
                         "--ipassmt", str(tmp_path / "map")).output)
    m = out["service_matrix"]["tcp/22"]
    cls = classes_as_sets(m)
    assert set(map(frozenset, cls.values())) == {frozenset({"192.0.2.0-192.0.2.255"}),
                                                  frozenset({"0.0.0.0-192.0.1.255", "192.0.3.0-255.255.255.255"})}
    assert m["always"] == m["edges"] and len(m["edges"]) == 2
    assert any("-s <addresses of X>" in a for a in out["assumptions"])
    # without a map the interface is undecided: anyone may, nobody surely
    m2 = json.loads(run(tmp_path, body, "--json", "--service", "tcp/22", "--chain-only").output)
    assert m2["service_matrix"]["tcp/22"]["always"] == [] and m2["service_matrix"]["tcp/22"]["edges"] == [["a", "a"]]


def test_fffuu_interface_maps_are_read_with_all_but_and_host_bits():
    amap = parse_ipassmt((SEMANTICS / "haskell_tool" / "ipassmt_tumi8").read_text(), "ipassmt_tumi8", Family.IPV4)
    assert amap.ifaces["eth1.96"] == ((int(ipaddress.ip_address("131.159.14.0")),
                                       int(ipaddress.ip_address("131.159.14.127"))),)
    assert amap.ifaces["foo"] == () and not amap.disjoint()
    inside = int(ipaddress.ip_address("131.159.14.1"))
    assert not any(lo <= inside <= hi for lo, hi in amap.ifaces["eth1.110"])
    with pytest.raises(IpAssmtError) as e:
        parse_ipassmt("eth0 = [10.0.0.0/8]\neth1 = [10.0.0.300]\n", "m", Family.IPV4)
    assert e.value.diagnostic.origin.line == 2


def test_open_ports_lists_ranges_per_source(tmp_path):
    body = save(":INPUT DROP [0:0]\n-A INPUT -p tcp -m multiport --dports 22,80:90 -j ACCEPT\n"
                "-A INPUT -s 198.51.100.0/24 -p udp --dport 53 -j ACCEPT\n-A INPUT -p icmp --icmp-type 8 -j ACCEPT\n")
    ports = json.loads(run(tmp_path, body, "--json").output)["open_ports"]
    by_src = {tuple(e["sources"]): e for e in ports}
    dns = by_src[("198.51.100.0-198.51.100.255",)]
    assert dns["open"] == {"tcp": ["22", "80-90"], "udp": ["53"], "icmp": ["8"]} and dns["maybe"] == {}
    rest = next(e for s, e in by_src.items() if "0.0.0.1-198.51.99.255" in s)
    assert rest["open"] == {"tcp": ["22", "80-90"], "icmp": ["8"]}


def test_bad_service_and_missing_chain_are_positioned_errors(tmp_path):
    body = save(":INPUT DROP [0:0]\n")
    res = run(tmp_path, body, "--service", "tcp/nosuchport")  # a bad option value is usage: exit 2
    assert res.exit_code == 2 and "not a port or service name" in res.output and "Traceback" not in res.output
    res = run(tmp_path, body, "--chain", "PREROUTING")
    assert res.exit_code == 1 and "rules:1:1: error: iptables has no built-in chain filter/PREROUTING" in res.output


def test_a_jump_loop_is_reported_not_raised(tmp_path):
    res = run(tmp_path, save(":INPUT DROP [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -p tcp -j A\n"))
    assert "this rule makes chains loop: A -> A" in res.output and "Traceback" not in res.output


# --- agreement with the simulator -------------------------------------------------------------------------

def _packet_for(m, service: Service, family: Family, hook: str, src: int, dst: int):
    lo = 0x7F000000 <= src <= 0x7FFFFFFF if family is Family.IPV4 else src == 1
    iif = ("lo" if lo else "eth0") if hook in ("INPUT", "FORWARD") else None
    oif = "eth1" if hook == "FORWARD" else None
    return service.packet(family, hook, src, dst, iif=iif, oif=oif)


def _agree(rs, chain: str, service: Service, pick) -> int:
    """Simulate one packet per class pair (addresses chosen by `pick`); return how many were decided."""
    flat = flatten(rs, "filter", chain)
    m = service_matrix(flat, service, s=setting(flat, None))
    rs_filter_only = type(rs)(rs.family, {"filter": rs.tables["filter"]}, rs.sets)
    sim = Simulator(rs_filter_only)
    checked = 0
    for a, ca in enumerate(m.classes):
        for b, cb in enumerate(m.classes):
            src, dst = pick(ca), pick(cb)
            verdict = sim.run(_packet_for(m, service, rs.family, chain, src, dst)).verdict
            if (a, b) in m.always:
                assert verdict == "ACCEPT", (a, b, src, dst)
                checked += 1
            elif (a, b) not in m.may:
                assert verdict in ("DROP", "REJECT"), (a, b, src, dst, verdict)
                checked += 1
    return checked


NETS = ["192.0.2.0/24", "192.0.2.0/25", "192.0.2.128/26", "192.0.2.7/32", "198.51.100.0/24", "127.0.0.0/8",
        "203.0.113.0/24"]


@st.composite
def rulesets(draw):
    lines = [f":INPUT {draw(st.sampled_from(['ACCEPT', 'DROP']))} [0:0]", ":X - [0:0]"]
    for chain in ("INPUT", "X"):
        for _ in range(draw(st.integers(1, 6))):
            words = [f"-A {chain}"]
            if draw(st.booleans()):
                words.append(f"{draw(st.sampled_from(['', '! ']))}-s {draw(st.sampled_from(NETS))}")
            if draw(st.booleans()):
                words.append(f"{draw(st.sampled_from(['', '! ']))}-d {draw(st.sampled_from(NETS))}")
            if draw(st.booleans()):
                words.append(draw(st.sampled_from(["-i lo", "! -i lo", "-i eth0", "-i eth+"])))
            proto = draw(st.sampled_from(["", "-p tcp", "-p udp", "-p icmp"]))
            words.append(proto)
            if proto in ("-p tcp", "-p udp") and draw(st.booleans()):
                words.append(draw(st.sampled_from(["--dport 22", "! --dport 22", "--sport 1024:65535",
                                                   "-m multiport --dports 22,80"])))
            if draw(st.booleans()):
                words.append(draw(st.sampled_from(["-m state --state NEW", "-m state --state ESTABLISHED",
                                                   "-m limit --limit 1/s",
                                                   "-m iprange --src-range 192.0.2.10-192.0.2.200"])))
            targets = ["ACCEPT", "DROP", "REJECT", "RETURN", "LOG"] + (["X", "-g X"] if chain == "INPUT" else [])
            t = draw(st.sampled_from(targets))
            words.append(t if t.startswith("-") else f"-j {t}")
            lines.append(" ".join(w for w in words if w))
    return save("\n".join(lines))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=rulesets(), port=st.sampled_from([22, 80, 443]), seed=st.integers(0, 2**16))
def test_matrix_agrees_with_the_simulator_on_packets_from_every_class_pair(text, port, seed):
    b = read(text, "gen.rules", "save", Family.IPV4)
    assert not [d for d in b.diagnostics if d.severity == "error"], (text, b.diagnostics)
    rnd = random.Random(seed)
    _agree(b.rulesets[Family.IPV4], "INPUT", Service(6, port, 40000), lambda c: rnd.randint(*rnd.choice(c)))


@pytest.mark.parametrize("path,chain,port", [
    (NET_NETWORK / "configs_synology_diskstation_ds414" / "iptables-save_jun_2015_cleanup", "INPUT", 8080),
    (SEMANTICS / "thy" / "Iptables_Semantics" / "Examples" / "TUM_Net_Firewall" /
     "iptables-save-2015-05-15_15-23-41_cheating", "FORWARD", 22),
    (NET_NETWORK / "config_home_user" / "typical_home_user_iptables-save", "INPUT", 22),
])
def test_matrix_agrees_with_the_simulator_on_real_rulesets(path, chain, port):
    text = path.read_text().replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00")  # the TUM dump's anonymised MACs
    rs = read(text, str(path)).rulesets[Family.IPV4]
    rnd = random.Random(1)
    assert _agree(rs, chain, Service(6, port, 10000), lambda c: rnd.randint(*rnd.choice(c))) > 0


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.iterdir()))
def test_matrix_agrees_with_the_simulator_on_the_seeds(seed):
    b = read((SEEDS / seed).read_text(), seed)
    rnd = random.Random(2)
    for rs in b.rulesets.values():
        if rs.tables.get("filter") is None:
            continue
        for service in (Service(6, 22, 40000), Service(17, 53, 40000)):
            _agree(rs, "INPUT", service, lambda c: rnd.randint(*rnd.choice(c)))


def test_a_script_for_both_families_gives_ipv4_on_top_and_ipv6_beside(tmp_path):
    script = ("#!/bin/sh\niptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n"
              "ip6tables -P INPUT DROP\nip6tables -A INPUT -s 2001:db8::/32 -p tcp --dport 22 -j ACCEPT\n")
    out = json.loads(run(tmp_path, script, "--json", "--service", "tcp/22").output)
    assert out["family"] == 4 and out["ipv6"]["family"] == 6
    v6 = classes_as_sets(out["ipv6"]["service_matrix"]["tcp/22"])
    doc = next(n for n, r in v6.items() if r == {"2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"})
    assert all(a == doc for a, _ in out["ipv6"]["service_matrix"]["tcp/22"]["edges"])


def test_packets_raw_untracks_are_named_not_taken_silently_as_new(tmp_path):
    """tcp/80 is open only to untracked packets: the NEW matrix shows it closed and says why, and the
    UNTRACKED one shows it open."""
    text = ("*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 80 -j NOTRACK\nCOMMIT\n"
            + save(":INPUT DROP [0:0]\n-A INPUT -m state --state UNTRACKED -j ACCEPT\n"))
    new = json.loads(run(tmp_path, text, "--json", "--service", "tcp/80").output)
    assert new["service_matrix"]["tcp/80"]["edges"] == []
    assert any("raw untracks" in a and "rules:3:1" in a and "--state UNTRACKED" in a for a in new["assumptions"])
    untracked = json.loads(run(tmp_path, text, "--json", "--service", "tcp/80", "--state", "UNTRACKED").output)
    assert untracked["service_matrix"]["tcp/80"]["edges"]
