"""`stockade logs` without a kernel: the log forms read, the mapping of prefixes to policy lines, --since,
foreign prefixes, and input that is not a log at all."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from stockade.kernel.logs import read_log, since_time, stockade_prefixes
from stockade.policy.compile import compile_policy

POLICY = """[server]
interfaces = ["eth0"]
[defaults]
closed = "reject"
[[allow]]
service = "ssh"
"""
BODY = "IN=eth0 OUT= MAC=00 SRC={src} DST=192.0.2.1 LEN=60 TTL=64 PROTO=TCP SPT=4000 DPT={port} SYN URGP=0"


def lines(prefix_closed: str, prefix_null: str) -> list[str]:
    return [
        f"2026-12-07T10:00:01.5+00:00 web kernel: [ 10.1] {prefix_closed}" + BODY.format(src="192.0.2.7", port=8080),
        f"Dec  7 10:01:02 web kernel: [ 11.0] {prefix_null}" + BODY.format(src="2001:0db8:0000:0000:0000:0000:0000:0009",
                                                                          port=81),
        "6,1234,11000000,-;UFW BLOCK " + BODY.format(src="192.0.2.7", port=53),
        "[   12.5] " + prefix_closed + BODY.format(src="192.0.2.8", port=22),
        "Dec  7 10:01:03 web kernel: usb 1-1: new device",
        "\x00\xff garbage " * 3,
    ]


def test_prefixes_map_to_policy_lines(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    known = stockade_prefixes(compile_policy(path).rulesets.values())
    by_chain = {k.chain: p for p, k in known.items()}
    assert by_chain["stk-log-L4"] == "stockade-drop: L4 " and known["stockade-drop: L4 "].tag == "p.toml:4"
    assert known["stockade-drop: Dnull "].tag == "p.toml:protect.null"
    assert all(len(p) <= 29 for p in known)
    r = read_log(lines("stockade-drop: L4 ", "stockade-drop: Dnull "), known)
    assert (r.read, r.logged) == (6, 4)
    assert r.lines == Counter({("p.toml:4", "log: closed"): 2, ("p.toml:protect.null", "log: NULL scan"): 1})
    assert r.foreign == Counter({"UFW BLOCK": 1})
    assert r.sources["2001:db8::9"] == 1 and r.sources["192.0.2.7"] == 2
    assert r.ports["tcp/8080"] == 1
    out = r.to_json({4: 'closed = "reject"'})
    assert out["lines"][0] == {"line": "p.toml:4", "note": "log: closed", "count": 2, "text": 'closed = "reject"'}


def test_since_and_rule_ids_without_a_policy():
    since = since_time("2026-12-07T10:01:00+00:00")
    r = read_log(lines("stockade-drop: L4 ", "stockade-drop: Dnull ")[:2], {}, since)
    assert r.skipped == 1 and r.lines == Counter({("Dnull", ""): 1})
    assert since_time("1h", now=7200.0) == 3600.0


def test_cli_json_and_bad_input(tmp_path):
    log = tmp_path / "kern.log"
    log.write_bytes("\n".join(lines("x: L4 ", "y: Dnull ")).encode("utf-8", "surrogateescape") + b"\xff\xfe\n")
    run = [sys.executable, "-m", "stockade.cli", "logs", "--source", str(log), "--json"]
    env = {**os.environ, "STOCKADE_STATE_DIR": str(tmp_path / "state")}
    p = subprocess.run(run, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["logged"] == 4 and not (tmp_path / "state").exists()
    p = subprocess.run(run[:-3] + ["--source", str(tmp_path / "missing")], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "cannot read" in p.stderr
    p = subprocess.run(run + ["--since", "yesterday"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_a_device_or_fifo_is_refused_and_long_lines_are_read_in_pieces(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "STOCKADE_STATE_DIR": str(tmp_path / "state")}
    for source in ("/dev/zero", str(fifo), str(tmp_path)):
        p = subprocess.run([sys.executable, "-m", "stockade.cli", "logs", "--source", source], capture_output=True,
                           text=True, env=env, timeout=60)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (source, p.stderr)
    big = tmp_path / "one-line.log"
    big.write_bytes(b"x" * (5 << 20) + b"\n" + lines("a: L4 ", "b: Dnull ")[0].encode() + b"\n")
    p = subprocess.run([sys.executable, "-m", "stockade.cli", "logs", "--source", str(big), "--json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["logged"] == 1, p.stderr
