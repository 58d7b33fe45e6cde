"""`stockade init` in a namespace running real listeners (SSH-like, HTTP, SMTP, DNS on TCP and UDP, and
one bound to loopback only) with an SSH session open: the proposal opens exactly the four services, SSH
for the session's source; applied with `stockade apply
--netns` and confirmed, every listener stays reachable from the client namespace, a port nothing listens
on is dropped, and `stockade lab` on the proposal finds 0 mismatches against its own table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib

from stockade.lab.topology import CLIENT_V4, SERVER_V4, Topology

LISTENERS = """
import socket, select
socks, sessions = [], []
for port, kind in ((22, 1), (80, 1), (25, 1), (53, 1), (53, 2), (8053, 1)):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if kind == 1 else socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::1" if port == 8053 else "::", port))
    if kind == 1:
        s.listen()
    socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_STREAM:
            conn = s.accept()[0]
            if conn.getsockname()[1] == 22:
                sessions.append(conn)  # an SSH session stays open
            else:
                conn.close()
        else:
            data, peer = s.recvfrom(512)
            s.sendto(data, peer)
"""

PROBE = """
import socket, sys, json
out = {}
for port in (22, 25, 53, 80, 8080):
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((sys.argv[1], port)); out[f"tcp/{port}"] = "open"
    except socket.timeout:
        out[f"tcp/{port}"] = "dropped"
    except OSError as e:
        out[f"tcp/{port}"] = f"error {e.errno}"
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1.5)
u.sendto(b"q", (sys.argv[1], 53))
try:
    out["udp/53"] = "open" if u.recv(16) == b"q" else "bad"
except socket.timeout:
    out["udp/53"] = "dropped"
print(json.dumps(out))
"""

SESSION = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 22), timeout=5)
print("connected", flush=True)
time.sleep(600)
"""


def stockade(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True,
                          check=False, timeout=300, env=env)


def test_init_proposes_what_the_listeners_need(kernel_ok, tmp_path):
    env = dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "state"))
    policy = tmp_path / "proposed.toml"
    with Topology() as t:
        server = t.server
        server.spawn([sys.executable, "-c", LISTENERS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while ":8053" not in server.run(["ss", "-Hlnt"]).stdout:
            assert time.monotonic() < deadline, "the listeners did not start"
            time.sleep(0.1)
        session = t.client.spawn([sys.executable, "-c", SESSION, SERVER_V4], stdout=subprocess.PIPE, text=True)
        assert session.stdout.readline().strip() == "connected"
        before = json.loads(t.client.run([sys.executable, "-c", PROBE, SERVER_V4]).stdout)
        assert before["tcp/8080"].startswith("error")  # refused: nothing filters yet

        r = stockade("init", "--netns", server.name, "--out", str(policy), "--json", env=env)
        assert r.returncode == 0, r.stderr
        found = json.loads(r.stdout)["found"]
        assert {(f["proto"], f["port"]) for f in found if f["kind"] == "listener" and f["opened"]} == \
            {("tcp", 22), ("tcp", 25), ("tcp", 53), ("udp", 53), ("tcp", 80)}
        assert [f["port"] for f in found if f["kind"] == "listener" and not f["opened"]] == [8053]
        text = policy.read_text()
        data = tomllib.loads(text)
        services = {s for e in data["allow"] for s in ([e["service"]] if isinstance(e["service"], str)
                                                       else e["service"])}
        assert services == {"ssh", "smtp", "http", "dns"}
        assert data["groups"]["admins"] == [CLIENT_V4]  # the open SSH session's source
        assert next(e for e in data["allow"] if e["service"] == "ssh")["from"] == ["admins"]
        assert "# guess:" in text and "loopback only" in text

        r = stockade("apply", str(policy), "--netns", server.name, "--confirm-timeout", "30", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        r = stockade("confirm", "--netns", server.name, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        after = json.loads(t.client.run([sys.executable, "-c", PROBE, SERVER_V4]).stdout)
        assert after == {"tcp/22": "open", "tcp/25": "open", "tcp/53": "open", "tcp/80": "open",
                         "tcp/8080": "dropped", "udp/53": "open"}

    r = stockade("lab", str(policy), "--json", env=env)
    report = json.loads(r.stdout)
    bad = [row for row in report["rows"] if row["status"] == "MISMATCH"]
    assert not bad and report["mismatches"] == 0 and r.returncode == 0, bad
    assert report["probes"] > 0


LIVE = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -s 198.51.100.20/32 -p udp --dport 161 -j ACCEPT
-A INPUT -p tcp --dport 443 -j ACCEPT
COMMIT
"""


def test_init_keeps_the_live_rulesets_and_the_scripts_allowances(kernel_ok, netns, tmp_path):
    """Nothing listens; the live ruleset opens SNMP to a monitoring host and HTTPS, the script opens IMAP
    for a network: each becomes an entry, marked as a guess from where it came."""
    netns.run(["iptables-restore"], input=LIVE)
    script = tmp_path / "old-firewall.sh"
    script.write_text("iptables -P INPUT DROP\niptables -A INPUT -s 203.0.113.0/24 -p tcp --dport 143 -j ACCEPT\n")
    r = stockade("init", "--netns", netns.name, "--from-script", str(script), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    data = tomllib.loads(got["policy"])
    entries = {(e["service"] if isinstance(e["service"], str) else tuple(e["service"]),
                e["from"] if e["from"] == "everyone" else tuple(tuple(data["groups"][g]) for g in e["from"]))
               for e in data["allow"]}
    assert entries == {("snmp", (("198.51.100.20",),)), ("https", "everyone"), ("imap", (("203.0.113.0/24",),))}
    assert got["policy"].count("allows it (guess") == 3
    assert any(f["kind"] == "live-ruleset" for f in got["found"])
    r = stockade("init", "--netns", "sk-no-such-ns")
    assert r.returncode == 2 and "Traceback" not in r.stderr
