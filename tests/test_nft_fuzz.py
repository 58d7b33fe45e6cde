"""Hostile nft JSON: random mutations of a valid listing are read and simulated without a traceback; every
failure is a StockadeError (positioned), and a statement of the wrong shape makes the verdict UNKNOWN."""
from __future__ import annotations

import copy
import json
import os
import random

from stockade.model.diagnostics import StockadeError
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.semantics.nft import NftSimulator

from .nftjson import ACCEPT, COUNTER, DROP, Doc, ct, jump, match, meta, payload

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (7 if CI else random.randrange(1, 2**31)))
JUNK = [None, True, 0, -1, 2**70, "", "@", "@nope", "x" * 300, [], [[]], {}, {"set": 5}, {"prefix": {"len": "a"}},
        {"range": [1]}, {"concat": 3}, {"&": [1]}, {"payload": {"protocol": "ip"}}, {"jump": {}}, 1.5]
PACKETS = ["tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif in0", "udp [2001:db8::5]:1 > [2001:db8:2::1]:53 iif in0",
           "icmp 192.0.2.5 > 198.51.100.1 type 8 iif in0 oif out0 hook FORWARD"]


def base() -> dict:
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input", -5).chain("inet", "t", "sub")
    d.set("inet", "t", "s", ["ipv4_addr", "inet_service"], [{"concat": ["192.0.2.5", 22]}])
    d.set("inet", "t", "m", "inet_service", [[22, ACCEPT]], map_="verdict")
    d.rule("inet", "t", "in", match({"concat": [payload("ip", "saddr"), payload("tcp", "dport")]}, "@s"), COUNTER,
           jump("sub"))
    d.rule("inet", "t", "in", match(ct("state"), ["new", "established"], "in"), {"vmap": {
        "key": payload("tcp", "dport"), "data": "@m"}})
    d.rule("inet", "t", "sub", {"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), 1]}}},
           {"limit": {"rate": 1, "per": "hour", "burst": 2}}, match(meta("iifname"), "in*"), DROP)
    return json.loads(d.text())


def _mutate(node, rng: random.Random):
    """One random value somewhere in the tree replaced by junk (or a key dropped)."""
    paths = []

    def walk(n, path):
        paths.append(path)
        if isinstance(n, dict):
            for k, v in n.items():
                walk(v, path + [k])
        elif isinstance(n, list):
            for i, v in enumerate(n):
                walk(v, path + [i])
    walk(node, [])
    if len(paths) < 2:
        return
    path = rng.choice(paths[1:])
    parent = node
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))


def test_mutated_listings_never_crash():
    rng = random.Random(SEED)
    refused = unknown = 0
    for _ in range(1500):
        doc = base()
        for _ in range(rng.randint(1, 3)):
            _mutate(doc, rng)
        try:
            rs = read_nft_json(json.dumps(doc), "fuzz.json")
        except StockadeError as e:
            assert str(e), "an error says what is wrong"
            refused += 1
            continue
        sim = NftSimulator(rs)
        for spec in PACKETS:
            unknown += sim.run(from_short(spec)).verdict == "UNKNOWN"
    assert refused and unknown, f"seed {SEED}: the mutations reached both the reader and the simulator"
