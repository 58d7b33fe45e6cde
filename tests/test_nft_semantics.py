"""semantics/nft.py: nft rules and hook composition, each case built as nft JSON and checked by hand.
(tests/kernel/test_nft_differential.py holds the simulator against the kernel on random rulesets.)"""
from __future__ import annotations

from stockade.model import Family
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.parse.save import read_save
from stockade.semantics.nft import NftSimulator

from .nftjson import ACCEPT, CONTINUE, COUNTER, DROP, RETURN, Doc, ct, goto, jump, match, meta, payload

SSH = "tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif in0"
DNS = "udp 192.0.2.5:40000 > 203.0.113.1:53 iif in0"
SSH6 = "tcp [2001:db8::5]:40000 > [2001:db8:2::1]:22 SYN iif in0"


def sim(d: Doc, iptables: str | None = None) -> NftSimulator:
    rs = read_nft_json(d.text(), "t.json")
    ipt = {Family.IPV4: read_save(iptables, "ipt", Family.IPV4).rulesets[Family.IPV4]} if iptables else None
    return NftSimulator(rs, ipt)


def counted(res) -> list[int]:
    return [c["handle"] for c in res.counted]


def two_chains(first: str = "accept", second: str = "accept") -> Doc:
    d = Doc().table("inet", "a").chain("inet", "a", "in", "input", -10, first)
    return d.table("ip", "b").chain("ip", "b", "in", "input", 10, second)


def test_accept_does_not_stop_the_next_chain_at_the_hook():
    d = two_chains()
    early = d.rule("inet", "a", "in", COUNTER, ACCEPT)
    late = d.rule("ip", "b", "in", match(payload("tcp", "dport"), 22), COUNTER, DROP)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "DROP" and counted(res) == [early, late]
    assert sim(d).run(from_short(DNS)).verdict == "ACCEPT"


def test_chains_run_in_priority_order_and_a_drop_is_final():
    d = Doc().table("ip", "b").chain("ip", "b", "in", "input", 10)
    late = d.rule("ip", "b", "in", COUNTER, ACCEPT)
    d.table("inet", "a").chain("inet", "a", "in", "input", -10)
    early = d.rule("inet", "a", "in", COUNTER, DROP)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "DROP" and counted(res) == [early] and late not in counted(res)


def test_policy_drop_of_one_chain_is_final():
    d = two_chains(first="drop")
    d.rule("ip", "b", "in", COUNTER, ACCEPT)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "DROP" and res.counted == []
    assert {"family": "inet", "table": "a", "chain": "in", "policy": "DROP"} in res.trace


def test_ip_tables_see_only_ipv4_and_inet_both():
    d = two_chains(second="drop")
    d.rule("inet", "a", "in", COUNTER)
    assert sim(d).run(from_short(SSH6)).verdict == "ACCEPT"  # ip b never sees IPv6
    assert sim(d).run(from_short(SSH)).verdict == "DROP"


def test_headers_the_packet_lacks_end_the_rule_even_when_negated():
    d = Doc().table("inet", "a").chain("inet", "a", "in", "input")
    v4 = d.rule("inet", "a", "in", match(payload("ip", "saddr"), "198.51.100.1", "!="), COUNTER)
    tcp = d.rule("inet", "a", "in", match(payload("tcp", "dport"), 53, "!="), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short(SSH6))) == [tcp]  # no IPv4 header: the `meta nfproto` dependency fails
    assert counted(s.run(from_short(DNS))) == [v4]  # no TCP header


def test_iptables_filter_composes_at_priority_zero():
    ipt = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    d = Doc().table("inet", "a").chain("inet", "a", "pre", "input", -5).chain("inet", "a", "post", "input", 5)
    before = d.rule("inet", "a", "pre", COUNTER)
    after = d.rule("inet", "a", "post", match(payload("tcp", "dport"), 22), COUNTER, DROP)
    s = sim(d, ipt)
    res = s.run(from_short(SSH))
    assert res.verdict == "DROP" and counted(res) == [before, after]
    assert {"table": "filter", "chain": "INPUT", "rule": 1} in res.matched  # iptables accepted; nft drops later
    res = s.run(from_short(DNS))
    assert res.verdict == "DROP" and counted(res) == [before]  # the iptables policy drops before `post`
    assert [step.get("policy") for step in res.trace if "family" not in step] == ["DROP"]


def test_sets_intervals_and_concatenations():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    d.set("ip", "t", "nets", "ipv4_addr", [{"prefix": {"addr": "192.0.2.0", "len": 29}},
                                           {"range": ["192.0.2.100", "192.0.2.110"]}], flags=["interval"])
    d.set("ip", "t", "pairs", ["ipv4_addr", "inet_service"], [{"concat": ["192.0.2.5", 22]}])
    nets = d.rule("ip", "t", "in", match(payload("ip", "saddr"), "@nets"), COUNTER)
    pairs = d.rule("ip", "t", "in", match({"concat": [payload("ip", "saddr"), payload("tcp", "dport")]}, "@pairs"),
                   COUNTER)
    anon = d.rule("ip", "t", "in", match(payload("tcp", "dport"), {"set": [21, {"range": [80, 90]}]}), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short(SSH))) == [nets, pairs]
    assert counted(s.run(from_short("tcp 192.0.2.105:1 > 203.0.113.1:85 SYN"))) == [nets, anon]
    assert counted(s.run(from_short("tcp 192.0.2.8:1 > 203.0.113.1:22 SYN"))) == []


def test_verdict_maps_jump_goto_return_and_continue():
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input").chain("inet", "t", "a").chain("inet", "t", "b")
    vmap = d.rule("inet", "t", "in", COUNTER, {"vmap": {"key": payload("tcp", "dport"), "data": {"set": [
        [22, jump("a")], [23, goto("b")], [24, DROP]]}}})
    after = d.rule("inet", "t", "in", COUNTER)
    in_a = d.rule("inet", "t", "a", COUNTER, CONTINUE)
    d.rule("inet", "t", "a", COUNTER, goto("b"))
    in_b = d.rule("inet", "t", "b", COUNTER, RETURN)
    s = sim(d)
    # jump a; continue; goto b; b returns to whoever called a, i.e. `in`, after the vmap rule
    assert counted(s.run(from_short(SSH))) == [vmap, in_a, in_a + 1, in_b, after]
    # goto b from the base chain: nothing to return to, so b's return ends in the base chain's policy
    res = s.run(from_short("tcp 192.0.2.5:1 > 203.0.113.1:23 SYN"))
    assert counted(res) == [vmap, in_b] and res.trace[-1]["policy"] == "ACCEPT"
    assert s.run(from_short("tcp 192.0.2.5:1 > 203.0.113.1:24 SYN")).verdict == "DROP"
    assert counted(s.run(from_short("tcp 192.0.2.5:1 > 203.0.113.1:25 SYN"))) == [vmap, after]  # a miss


def test_map_sets_the_mark_and_flag_tests():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    d.rule("ip", "t", "in", {"mangle": {"key": meta("mark"), "value": {"map": {
        "key": payload("ip", "saddr"), "data": {"set": [["192.0.2.5", 7]]}}}}})
    marked = d.rule("ip", "t", "in", match(meta("mark"), 7), COUNTER)
    syn = d.rule("ip", "t", "in", match(payload("tcp", "flags"), ["syn", "fin"], "in"), COUNTER)
    exact = d.rule("ip", "t", "in", match({"&": [payload("tcp", "flags"), ["syn", "ack"]]}, "syn"), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short(SSH))) == [marked, syn, exact]
    assert counted(s.run(from_short("tcp 192.0.2.6:1 > 203.0.113.1:22 SYN,ACK"))) == [syn]


def test_conntrack_runs_at_minus_200_and_notrack_before_it():
    d = Doc().table("inet", "t").chain("inet", "t", "raw", "prerouting", -300).chain("inet", "t", "in", "input")
    d.rule("inet", "t", "raw", match(payload("udp", "dport"), 53), {"notrack": None})
    early = d.rule("inet", "t", "raw", match(ct("state"), "invalid", "in"), COUNTER)  # no conntrack entry yet
    marked = d.rule("inet", "t", "raw", match(ct("state"), "untracked", "in"), COUNTER)
    new = d.rule("inet", "t", "in", match(ct("state"), "new", "in"), COUNTER)
    untracked = d.rule("inet", "t", "in", match(ct("state"), "untracked", "in"), COUNTER)
    s = sim(d)
    res = s.run(from_short(SSH))
    assert counted(res) == [early, new] and res.ctstate == "NEW"
    # notrack marks the packet at once (nft_notrack_eval): a later rule before conntrack reads it untracked,
    # not invalid (the kernel differential found this, seed 685091898)
    res = s.run(from_short(DNS))
    assert counted(res) == [marked, untracked] and res.ctstate == "UNTRACKED"


def test_limit_and_quota_keep_state_across_packets():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    lim = d.rule("ip", "t", "in", {"limit": {"rate": 1, "burst": 3, "per": "hour"}}, COUNTER)
    over = d.rule("ip", "t", "in", {"limit": {"rate": 1, "burst": 2, "per": "hour", "inv": True}}, COUNTER)
    quota = d.rule("ip", "t", "in", {"quota": {"val": 130, "val_unit": "bytes"}}, COUNTER)
    s = sim(d)
    runs = [counted(s.run(from_short(SSH))) for _ in range(5)]  # 60-byte packets
    assert [lim in r for r in runs] == [True, True, True, False, False]
    assert [over in r for r in runs] == [False, False, True, True, True]
    assert [quota in r for r in runs] == [True, True, False, False, False]  # 120 <= 130 < 180


def test_interface_names_and_wildcards():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    star = d.rule("ip", "t", "in", match(meta("iifname"), "in*"), COUNTER)
    exact = d.rule("ip", "t", "in", match(meta("iifname"), "in"), COUNTER)
    no_out = d.rule("ip", "t", "in", match(meta("oifname"), "eth0", "!="), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short(SSH))) == [star, no_out]
    assert counted(s.run(from_short(SSH.replace("in0", "in")))) == [star, exact, no_out]


def test_what_is_not_modelled_is_unknown_and_named():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    d.rule("ip", "t", "in", COUNTER)
    opaque = d.rule("ip", "t", "in", {"xt": {"type": "match", "name": "recent"}}, DROP)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "UNKNOWN" and f"ip t chain in handle {opaque}" in res.reason and "xt" in res.reason


def test_ties_at_one_priority_are_noted():
    d = Doc().table("inet", "a").chain("inet", "a", "in", "input", 0).table("ip", "b").chain("ip", "b", "in", "input", 0)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "ACCEPT" and any("share priority 0" in n for n in res.notes)


def test_notrack_after_conntrack_makes_an_invalid_packet_untracked():
    """nft_notrack_eval leaves a packet with a connection alone, but a packet conntrack found invalid has
    none, so it becomes untracked (the kernel differential found this)."""
    d = Doc().table("inet", "t").chain("inet", "t", "pre", "prerouting", -100).chain("inet", "t", "in", "input")
    d.rule("inet", "t", "pre", {"notrack": None})
    untracked = d.rule("inet", "t", "in", match(ct("state"), "untracked", "in"), COUNTER)
    s = sim(d)
    assert s.run(from_short("tcp 192.0.2.5:1 > 203.0.113.1:22 SYN,FIN iif in0")).ctstate == "UNTRACKED"
    res = s.run(from_short(SSH))
    assert res.ctstate == "NEW" and untracked not in counted(res)


def test_netdev_and_bridge_tables_are_reported_not_analysed():
    d = Doc().table("netdev", "edge").chain("netdev", "edge", "ingress")
    d.items[-1]["chain"] |= {"type": "filter", "hook": "ingress", "dev": "eth0", "prio": 0, "policy": "drop"}
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "ACCEPT" and "table netdev edge is not analysed" in " ".join(res.notes)


def test_continue_goes_on_with_the_rules_next_statement():
    """A `continue` verdict (from a verdict map, say) lets the rest of the rule run (nft_do_chain goes
    on with the next expression while the verdict is NFT_CONTINUE): found by the kernel differential."""
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    vm = d.rule("ip", "t", "in", {"vmap": {"key": payload("tcp", "dport"), "data": {"set": [[22, CONTINUE]]}}},
                COUNTER, DROP)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "DROP" and counted(res) == [vm]


def test_fragment_offset_and_the_df_bit():
    """`ip frag-off & 0x1fff != 0` (a later fragment), `ip frag-off & 0x4000 != 0` (DF) and the bare
    `ip frag-off 0x4000` (DF, whole: no MF, offset 0) read the packet's offset, MF and DF bits."""
    d = Doc().table("ip", "t").chain("ip", "t", "in", "prerouting")
    frag = d.rule("ip", "t", "in", match({"&": [payload("ip", "frag-off"), 0x1FFF]}, 0, "!="), COUNTER)
    df = d.rule("ip", "t", "in", match({"&": [payload("ip", "frag-off"), 0x4000]}, 0, "!="), COUNTER)
    whole_df = d.rule("ip", "t", "in", match(payload("ip", "frag-off"), 0x4000), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short("udp 192.0.2.5:1 > 203.0.113.1:53 frag 3 iif in0"))) == [frag]
    assert counted(s.run(from_short("udp 192.0.2.5:1 > 203.0.113.1:53 df iif in0"))) == [df, whole_df]
    assert counted(s.run(from_short("udp 192.0.2.5:1 > 203.0.113.1:53 frag 3 df iif in0"))) == [frag, df]
    assert counted(s.run(from_short(DNS))) == [] and s.undecided() == []


def test_masquerade_accepts_and_a_later_chain_is_not_guessed():
    d = Doc().table("ip", "nat").chain("ip", "nat", "post", "postrouting", 100)
    d.items[-1]["chain"]["type"] = "nat"
    d.rule("ip", "nat", "post", match(meta("oifname"), "out0"), {"masquerade": None})
    fwd = "tcp 192.0.2.5:40000 > 198.51.100.9:80 SYN iif in0 oif out0 hook FORWARD"
    res = sim(d).run(from_short(fwd))
    assert res.verdict == "ACCEPT" and "masquerade" in " ".join(res.notes)
    d.table("ip", "late").chain("ip", "late", "post", "postrouting", 200)
    res = sim(d).run(from_short(fwd))
    assert res.verdict == "UNKNOWN" and "rewritten" in res.reason


def test_a_concatenation_compared_with_one_element():
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    pair = d.rule("ip", "t", "in", match({"concat": [payload("ip", "saddr"), payload("tcp", "dport")]},
                                         {"concat": ["192.0.2.5", 22]}), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short(SSH))) == [pair]
    assert counted(s.run(from_short(SSH.replace(":22", ":23")))) == []


def test_a_native_chain_at_the_iptables_filter_priority_is_a_noted_tie():
    ipt = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    d = Doc().table("inet", "filter").chain("inet", "filter", "input", "input", 0)
    res = sim(d, ipt).run(from_short(SSH))
    assert any("inet filter input, iptables filter INPUT share priority 0" in n for n in res.notes), res.notes


def test_log_to_a_group_goes_on_and_names_its_group():
    d = Doc().table("inet", "a").chain("inet", "a", "in", "input", 0)
    logged = d.rule("inet", "a", "in", COUNTER, {"log": {"prefix": "stockade-drop: L3 ", "group": 7}})
    dropped = d.rule("inet", "a", "in", COUNTER, DROP)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "DROP" and counted(res) == [logged, dropped]
    assert any(n.endswith("log prefix 'stockade-drop: L3 ' group 7") for n in res.notes), res.notes


def test_meta_protocol_is_an_ether_type():
    """`meta protocol vmap { ip : jump v4, ip6 : jump v6 }`: the link-layer protocol by its names."""
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input").chain("inet", "t", "v4").chain("inet", "t", "v6")
    d.rule("inet", "t", "in", {"vmap": {"key": meta("protocol"), "data": {"set": [["ip", jump("v4")],
                                                                                   ["ip6", jump("v6")]]}}})
    v4 = d.rule("inet", "t", "v4", COUNTER, DROP)
    v6 = d.rule("inet", "t", "v6", COUNTER, ACCEPT)
    s = sim(d)
    assert counted(s.run(from_short(SSH))) == [v4] and counted(s.run(from_short(SSH6))) == [v6]
    assert s.undecided() == []


def test_a_meter_limits_each_element_on_its_own():
    """`meter NAME { ip saddr limit rate 1/hour burst 2 }`: each source its own bucket; with a timeout the
    element is updated, which changes nothing while the bucket refills within it, and is UNKNOWN else."""
    def meter(timeout=None, per="hour"):
        key = payload("ip", "saddr")
        return {"meter": {"name": "m", "size": 65535, "stmt": {"limit": {"rate": 1, "burst": 2, "per": per}},
                          "key": {"elem": {"val": key, "timeout": timeout}} if timeout else key}}
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    lim = d.rule("ip", "t", "in", meter(), COUNTER)
    s = sim(d)
    runs = [lim in counted(s.run(from_short(SSH))) for _ in range(3)]
    other = lim in counted(s.run(from_short(SSH.replace("192.0.2.5", "192.0.2.6"))))
    assert runs == [True, True, False] and other
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    lim = d.rule("ip", "t", "in", meter(timeout=7200), COUNTER)
    s = sim(d)
    assert [lim in counted(s.run(from_short(SSH))) for _ in range(3)] == [True, True, False]
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    d.rule("ip", "t", "in", meter(timeout=10), COUNTER)
    res = sim(d).run(from_short(SSH))
    assert res.verdict == "UNKNOWN" and "times out" in res.reason and sim(d).undecided()


def test_mss_clamping_does_not_stop_the_rule():
    """`tcp option maxseg size set rt mtu`: a change of a value the model does not read."""
    d = Doc().table("inet", "t").chain("inet", "t", "fwd", "forward")
    clamp = d.rule("inet", "t", "fwd", match(payload("tcp", "flags"), "syn"),
                   {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}},
                               "value": {"rt": {"key": "mtu"}}}}, COUNTER)
    res = sim(d).run(from_short(SSH.replace("SYN", "SYN hook FORWARD oif out0")))
    assert res.verdict == "ACCEPT" and counted(res) == [clamp]


def test_undecided_names_what_no_packet_decides():
    """What the reading loses is listed by rule and statement; what one packet leaves open is not."""
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input")
    d.rule("inet", "t", "in", match(meta("mark"), 1), match(payload("tcp", "dport"), 22), ACCEPT)
    route = d.rule("inet", "t", "in", match({"fib": {"flags": ["daddr"], "result": "oif"}}, 0), DROP)
    assert sim(d).undecided() == [("inet t", "in", route, 0, "fib daddr oif: the routing table is not in the "
                                   "model (give src_type/dst_type, or src_via_iif, in the packet)")]


def test_reverse_path_fib_reads_the_packets_route_back():
    """`fib saddr . iif oif missing drop` (firewalld's IPv6 rpfilter): the route to the source, looked up
    through the input interface, is that interface or none, as the packet's src_via_iif says."""
    d = Doc().table("inet", "t").chain("inet", "t", "pre", "prerouting")
    rpf = d.rule("inet", "t", "pre", match({"fib": {"flags": ["saddr", "iif"], "result": "oif"}}, False), DROP)
    s = sim(d)
    assert s.run(from_short(SSH6 + " rpf yes")).verdict == "ACCEPT"
    res = s.run(from_short(SSH6 + " rpf no"))
    assert res.verdict == "DROP" and counted(res) == [] and res.matched[0]["handle"] == rpf
    res = s.run(from_short(SSH6))
    assert res.verdict == "UNKNOWN" and "src_via_iif" in res.reason and s.undecided() == []


def test_sets_the_packets_fill_keep_their_elements_until_they_time_out():
    """`add @seen { ip saddr }` keeps an element 60 s from when it came, `update` from the last packet;
    a full set takes no new one (the rule stops); an element deleted may still fill the set: UNKNOWN."""
    d = Doc().table("ip", "t").chain("ip", "t", "in", "input")
    d.set("ip", "t", "seen", "ipv4_addr", [], flags=["dynamic", "timeout"])
    d.items[-1]["set"] |= {"timeout": 60, "size": 2}
    hit = d.rule("ip", "t", "in", match(payload("ip", "saddr"), "@seen"), COUNTER)
    add = d.rule("ip", "t", "in", match(payload("tcp", "dport"), 1000),
                 {"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "@seen"}}, COUNTER)
    upd = d.rule("ip", "t", "in", match(payload("tcp", "dport"), 1001),
                 {"set": {"op": "update", "elem": payload("ip", "saddr"), "set": "@seen"}}, COUNTER)
    d.rule("ip", "t", "in", match(payload("tcp", "dport"), 1002),
           {"set": {"op": "delete", "elem": payload("ip", "saddr"), "set": "@seen"}})
    s = sim(d)

    def send(src, port, t):
        return s.run(from_short(f"tcp {src}:1 > 203.0.113.1:{port} SYN t {t}"))
    assert counted(send("192.0.2.1", 1000, 0)) == [add] and counted(send("192.0.2.1", 9, 1)) == [hit]
    assert counted(send("192.0.2.2", 1001, 30)) == [upd]
    assert counted(send("192.0.2.3", 1000, 31)) == []  # full: the rule stops at the set statement
    assert counted(send("192.0.2.1", 9, 61)) == []  # added at 0: gone at 60
    assert counted(send("192.0.2.2", 1001, 80)) == [hit, upd]  # updated at 30: there until 90
    assert counted(send("192.0.2.2", 9, 89)) == [hit] and counted(send("192.0.2.2", 9, 141)) == []
    res = send("192.0.2.3", 1000, 150)  # both timed out, maybe not yet freed
    assert res.verdict == "UNKNOWN" and "freed" in res.reason
    assert s.undecided() == []


def test_notrack_alone_turns_no_conntrack_on():
    """A raw chain of `notrack` rules and no ct expression anywhere: the kernel runs no conntrack, so
    nothing holds a lone fragment for reassembly (a ct test beside it would)."""
    d = Doc().table("inet", "raw").chain("inet", "raw", "pre", "prerouting", -300)
    d.rule("inet", "raw", "pre", match(payload("udp", "dport"), 53), {"notrack": None})
    frag = "udp [2001:db8::5]:1 > [2001:db8:2::1]:53 frag 1 mf iif in0"
    assert sim(d).run(from_short(frag)).verdict == "ACCEPT"
    d.table("inet", "f").chain("inet", "f", "in", "input")
    d.rule("inet", "f", "in", match(ct("state"), "established", "in"), ACCEPT)
    res = sim(d).run(from_short(frag))
    assert res.verdict == "DROP" and "reassembly" in res.reason


def test_a_concatenation_with_an_unknown_part_is_decided_by_the_others():
    """`meta l4proto . th dport vmap { udp . 53 : accept }` of an ICMP packet reads its checksum, which the
    model lacks; no element is ICMP, so nothing matches all the same. A UDP element and a raw protocol
    with no ports in the model (th dport of protocol 253) is UNKNOWN."""
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input", 0, "drop")
    key = {"concat": [meta("l4proto"), payload("th", "dport")]}
    d.rule("inet", "t", "in", {"vmap": {"key": key, "data": {"set": [[{"concat": ["udp", 53]}, ACCEPT]]}}})
    s = sim(d)
    assert s.run(from_short("icmp 192.0.2.5 > 203.0.113.1 type 8 iif in0")).verdict == "DROP"
    assert s.run(from_short(DNS)).verdict == "ACCEPT" and s.undecided() == []
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input", 0, "drop")
    d.rule("inet", "t", "in", {"vmap": {"key": key, "data": {"set": [[{"concat": [253, 53]}, ACCEPT]]}}})
    res = sim(d).run(from_short("253 192.0.2.5 > 203.0.113.1 iif in0"))
    assert res.verdict == "UNKNOWN" and "th dport" in res.reason


def test_undecided_reaches_statements_behind_value_tests():
    """A DNAT behind `tcp dport 9000` is listed though no probe is sent to port 9000; `th dport` behind
    `meta l4proto udp` is not, as no ICMP probe gets there."""
    d = Doc().table("ip", "nat").chain("ip", "nat", "pre", "prerouting")
    d.items[-1]["chain"]["type"] = "nat"
    dnat = d.rule("ip", "nat", "pre", match(payload("tcp", "dport"), 9000),
                  {"dnat": {"addr": "192.0.2.7", "port": 80}})
    d.rule("ip", "nat", "pre", match(meta("l4proto"), "udp"), match(payload("th", "dport"), 53), ACCEPT)
    assert sim(d).undecided() == [("ip nat", "pre", dnat, 1, "statement `dnat` is not modelled")]


def test_ipv6_extension_headers_the_model_carries():
    """`exthdr frag exists` holds for an IPv6 fragment, not for a whole packet; an IPv4 packet never gets
    there (nft's implicit `meta nfproto ipv6`); no other extension header is in the model's packets."""
    d = Doc().table("inet", "t").chain("inet", "t", "in", "prerouting")
    frag = d.rule("inet", "t", "in", match({"exthdr": {"name": "frag"}}, True), COUNTER)
    nofrag = d.rule("inet", "t", "in", match({"exthdr": {"name": "frag"}}, False), COUNTER)
    rt = d.rule("inet", "t", "in", match({"exthdr": {"name": "rt"}}, True), COUNTER)
    off = d.rule("inet", "t", "in", match({"exthdr": {"name": "frag", "field": "frag-off"}}, 3), COUNTER)
    s = sim(d)
    assert counted(s.run(from_short("udp [2001:db8::5]:1 > [2001:db8:2::1]:53 frag 3 iif in0"))) == [frag, off]
    assert counted(s.run(from_short("udp [2001:db8::5]:1 > [2001:db8:2::1]:53 iif in0"))) == [nofrag]
    assert counted(s.run(from_short(DNS))) == [] and rt not in counted(s.run(from_short(SSH6)))
    assert s.undecided() == []


def test_ct_status_nat_bits_of_a_first_packet_beside_nat_chains():
    """`ct status dnat accept` (a router forwarding its port forwards) with nat chains in the ruleset: a
    connection's first packet that no DNAT statement mapped has no dnat bit; other status bits stay
    UNKNOWN there (whether the nat hook ran yet, confirmation)."""
    d = Doc().table("ip", "nat").chain("ip", "nat", "post", "postrouting", 100)
    d.items[-1]["chain"]["type"] = "nat"
    d.table("inet", "f").chain("inet", "f", "in", "input", 0, "drop")
    d.rule("inet", "f", "in", match(ct("status"), "dnat", "in"), ACCEPT)
    assert sim(d).run(from_short(SSH)).verdict == "DROP"
    d.rule("inet", "f", "in", match(ct("status"), "confirmed", "in"), ACCEPT)
    assert sim(d).run(from_short(SSH)).verdict == "UNKNOWN"
