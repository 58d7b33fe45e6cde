"""Issue 16 item 1 (feeds) and issue 15 item 6 (sets changed in place), with the real tools in namespaces.

A policy blocks the group of a feed; `stockade apply` makes it live, `stockade feeds update` fills it
from a list of STOCKADE_FEED_ENTRIES entries (default 20,000; bench/blocklist_load.py times 1,000,000: three addresses to one /24 network,
as bench/blocklist_load.py makes them, plus the client's address), then a second list with 10,000
changes (5,000 entries gone, 5,000 new) replaces it. The update must be applied as a diff in under a
second (the kernel step's own time), the set must afterwards hold exactly the new list, and a probe in
the client namespace, listed in both lists, opens TCP connections to a listening port all along: not
one may connect (the set is never empty on the way). Before the client is listed and after it is
removed, it connects (the probe can see an open path). A list with bad lines keeps its good ones and
names the bad ones by line; a fetch that fails (HTTP server inside the namespace, on its loopback,
stopped) keeps the last good list.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.kernel.host import Host
from stockade.kernel.sets import live_members, merged
from stockade.lab.topology import CLIENT_V4, SERVER_V4, Topology

from .applylab import PY, STOCKADE, connects, env, listen, stockade

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from blocklist_load import blocklist  # noqa: E402 -- the bench's list, so test and bench measure the same

ENTRIES = int(os.environ.get("STOCKADE_FEED_ENTRIES", "20000"))  # 1M: bench/blocklist_load.py
CHANGES = 10_000
POLICY = """admin = ["admins"]
[server]
interfaces = ["in0"]
[groups]
admins = ["198.51.100.7"]
[feeds.bl]
{source}
max_entries = 2000000
[blocklist]
inbound = ["bl"]
[[allow]]
service = "http"
"""
PROBE = r"""
import os, socket, sys
server, stop = sys.argv[1], sys.argv[2]
tries = connected = 0
while not os.path.exists(stop):
    tries += 1
    try:
        socket.create_connection((server, 80), timeout=0.2).close()
        connected += 1
    except OSError:
        pass
print(tries, connected, flush=True)
"""


def feed_update(ns: str, state: Path, policy: Path, *extra: str) -> dict:
    proc = stockade(["feeds", "update", str(policy), "--netns", ns, "--json", *extra], state, check=False)
    assert proc.returncode in (0, 1) and proc.stdout.strip(), (proc.returncode, proc.stderr[-3000:])
    return json.loads(proc.stdout)["feeds"][0]


def held(ns: str, backend: str) -> set[str]:
    """Every member of the feed's four sets, as the kernel lists them (nft: merged ranges)."""
    host = Host(ns)
    return {m for kind in ("ip4", "net4", "ip6", "net6") for m in live_members(host, backend, f"stk-bl-{kind}")}


def expected(entries: list[str], backend: str) -> set[str]:
    if backend != "nftables":
        return set(entries)
    return {e for e in entries if "/" not in e} | set(merged(e for e in entries if "/" in e))


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_feed_replaced_in_place_never_empty(kernel_ok, tmp_path, backend):
    first = blocklist(ENTRIES) + [CLIENT_V4]
    second = first[CHANGES // 2:] + [f"203.0.{i // 250}.{i % 250 + 1}" for i in range(CHANGES // 2)]
    feed = tmp_path / "bl.txt"
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(source='file = "bl.txt"'))
    state = tmp_path / "state"
    with Topology() as t:
        listen(t.server, [80])
        stockade(["apply", str(policy), "--netns", t.server.name, "--confirm-timeout", "0", "--backend", backend],
                 state)
        assert connects(t.client, SERVER_V4, 80), "the probe's path is not open before the client is listed"
        feed.write_text("\n".join(first) + "\n")
        r = feed_update(t.server.name, state, policy)
        assert r["error"] is None and r["added"] == len(expected(first, backend)), r
        stop = tmp_path / "stop"
        probe = t.client.spawn([PY, "-c", PROBE, SERVER_V4, str(stop)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        feed.write_text("\n".join(second) + "\n")
        began = time.perf_counter()
        r = feed_update(t.server.name, state, policy)
        whole = time.perf_counter() - began  # the command: read and check the list, diff, apply, record
        time.sleep(0.5)
        stop.touch()
        tries, connected = map(int, probe.stdout.readline().split())
        print(f"{backend}: {ENTRIES} entries, {r['added']} added and {r['deleted']} deleted in place in "
              f"{r['seconds']} s ({r['cpu_seconds']} s stockade's CPU, load {os.getloadavg()[0]:.1f}; the whole "
              f"`feeds update` {whole:.2f} s); "
              f"probe: {tries} connection attempts from a listed address, {connected} connected")
        a, b = expected(first, backend), expected(second, backend)  # sets: the list may repeat an entry
        diff = (len(b - a), len(a - b))
        assert r["error"] is None and (r["added"], r["deleted"]) == diff and sum(diff) > CHANGES * 0.99, r
        assert tries > 5 and connected == 0
        assert held(t.server.name, backend) == expected(second, backend)
        assert r["seconds"] < 1.0, f"the diff took {r['seconds']} s"
        feed.write_text("\n".join(e for e in second if e != CLIENT_V4) + "\n")
        assert feed_update(t.server.name, state, policy)["deleted"] == 1
        assert connects(t.client, SERVER_V4, 80), "the client is off the list but still blocked"
        status = json.loads(stockade(["status", "--netns", t.server.name, "--json"], state).stdout)
        assert status["feeds"][0]["entries"] == len(set(second)) - 1, status["feeds"]
        assert not status["drift"], status["drift_lines"][:10]  # a feed update is no drift, on either back end


SERVE = r"""
import http.server, sys, os
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 8080), H)
print("ready", flush=True)
s.serve_forever()
"""


def test_feed_over_http_bad_lines_and_failed_fetch(kernel_ok, tmp_path):
    """Served by http.server inside the namespace (its loopback); stockade runs inside it with
    `ip netns exec`, so the fetch never leaves it."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "drop.txt").write_text("; Spamhaus DROP List 2026/12/07\n192.0.2.0/28 ; SBL1\n198.51.100.128/25 ; SBL2\n"
                                  "not-an-address ; SBL3\n203.0.113.7/33 ; SBL4\n2001:db8::/32 ; SBL5\n")
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(source='url = "http://127.0.0.1:8080/drop.txt"\nformat = "spamhaus"\ntimeout = 2'))
    state = tmp_path / "state"
    with Topology() as t:
        def run(*args):
            return subprocess.run(["ip", "netns", "exec", t.server.name, STOCKADE, *args], capture_output=True,
                                  text=True, env=env(state), check=False)
        assert run("apply", str(policy), "--confirm-timeout", "0", "--backend", "iptables-nft").returncode == 0
        server = t.server.spawn([PY, "-c", SERVE, str(www)], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        first = run("feeds", "update", str(policy))
        assert first.returncode == 1, first.stderr  # bad lines are findings; the good ones are live
        url = "http://127.0.0.1:8080/drop.txt"
        assert f"{url}:4:1: warning: `not-an-address` is not an address or network; line skipped" in first.stdout
        assert f"{url}:5:1: warning:" in first.stdout and "3 entries" in first.stdout, first.stdout
        host = Host(t.server.name)
        assert set(live_members(host, "iptables-nft", "stk-bl-net4")) == {"192.0.2.0/28", "198.51.100.128/25"}
        assert live_members(host, "iptables-nft", "stk-bl-net6") == ["2001:db8::/32"]
        again = json.loads(run("feeds", "update", str(policy), "--json").stdout)["feeds"][0]
        assert again.get("not_modified"), again  # If-Modified-Since: http.server answers 304
        server.kill()
        server.wait()
        failed = run("feeds", "update", str(policy), "--json", "--force")
        r = json.loads(failed.stdout)["feeds"][0]
        assert failed.returncode == 1 and "Connection refused" in r["error"], r
        assert set(live_members(host, "iptables-nft", "stk-bl-net4")) == {"192.0.2.0/28", "198.51.100.128/25"}
        status = json.loads(run("status", "--json").stdout)["feeds"][0]
        assert status["entries"] == 3 and "Connection refused" in status["last_error"], status
        # an apply keeps what the feed holds (its group compiles from the last good list)
        assert run("apply", str(policy), "--confirm-timeout", "0", "--backend", "iptables-nft").returncode == 0
        assert live_members(host, "iptables-nft", "stk-bl-net6") == ["2001:db8::/32"]


@pytest.mark.parametrize("systemd", [True, False])
def test_persist_runs_the_feeds_on_their_refresh(netns, tmp_path, systemd):
    """`persist --root`: a systemd timer (enabled) where the root has systemd, else a cron.d entry."""
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(source='url = "https://feed.example/drop.txt"\nrefresh = "15m"'))
    state, root = tmp_path / "state", tmp_path / "root"
    (root / ("etc/systemd/system" if systemd else "etc")).mkdir(parents=True)
    stockade(["apply", str(policy), "--netns", netns.name, "--confirm-timeout", "0", "--backend", "nftables"], state)
    stockade(["persist", "--netns", netns.name, "--root", str(root)], state)
    command = f"-m stockade.cli feeds update {policy} --netns {netns.name}"
    if systemd:
        timer = (root / "etc/systemd/system/stockade-feeds.timer").read_text()
        assert "OnUnitActiveSec=900s" in timer and "WantedBy=timers.target" in timer
        assert command in (root / "etc/systemd/system/stockade-feeds.service").read_text()
        link = root / "etc/systemd/system/timers.target.wants/stockade-feeds.timer"
        assert os.readlink(link) == "/etc/systemd/system/stockade-feeds.timer"
        assert not (root / "etc/cron.d").exists()
    else:
        cron = (root / "etc/cron.d/stockade-feeds").read_text()
        assert cron.splitlines()[1].startswith("*/15 * * * * root ") and command in cron
        assert (root / "etc/cron.d/stockade-feeds").stat().st_mode & 0o777 == 0o644


def test_a_live_set_that_differs_from_the_last_good_list_is_diffed_from_the_kernel(netns, tmp_path):
    """nft: someone deleted a member by hand; the next update's delete of it would fail the transaction,
    so the update diffs against what the kernel holds instead, and the set ends exactly as the list."""
    feed, policy, state = tmp_path / "bl.txt", tmp_path / "p.toml", tmp_path / "state"
    policy.write_text(POLICY.format(source='file = "bl.txt"'))
    stockade(["apply", str(policy), "--netns", netns.name, "--confirm-timeout", "0", "--backend", "nftables"], state)
    feed.write_text("192.0.2.10\n192.0.2.11\n203.0.113.0/25\n")
    assert feed_update(netns.name, state, policy)["error"] is None
    netns.run(["nft", "delete", "element", "inet", "stockade", "ip_stk-bl-ip4", "{ 192.0.2.10 }"])
    feed.write_text("192.0.2.11\n192.0.2.12\n203.0.113.0/25\n")
    r = feed_update(netns.name, state, policy)
    assert r["error"] is None, r
    assert held(netns.name, "nftables") == {"192.0.2.11", "192.0.2.12", "203.0.113.0/25"}


def test_nft_ranges_join_and_split_in_place(netns, tmp_path):
    """nft interval sets hold merged ranges: a network that fills the gap between two joins them into one
    range (both deleted, the joined one added, in one transaction), and taking it out splits them again;
    a network that shrinks is replaced. The set holds exactly the merged new list after each update."""
    feed, policy, state = tmp_path / "bl.txt", tmp_path / "p.toml", tmp_path / "state"
    policy.write_text(POLICY.format(source='file = "bl.txt"'))
    stockade(["apply", str(policy), "--netns", netns.name, "--confirm-timeout", "0", "--backend", "nftables"], state)
    lists = [["192.0.2.0/26", "192.0.2.128/26", "198.51.100.0/24", "203.0.113.5", "2001:db8::/48"],
             ["192.0.2.0/26", "192.0.2.64/26", "192.0.2.128/26", "198.51.100.0/25", "203.0.113.6", "2001:db8:1::/48",
              "2001:db8::/48"]]
    want = [{"192.0.2.0/26", "192.0.2.128/26", "198.51.100.0/24", "203.0.113.5", "2001:db8::/48"},
            {"192.0.2.0-192.0.2.191", "198.51.100.0/25", "203.0.113.6", "2001:db8::/47"}]
    for entries, held_now in zip(lists + lists[:1], want + want[:1]):
        feed.write_text("\n".join(entries) + "\n")
        r = feed_update(netns.name, state, policy)
        assert r["error"] is None, r
        assert held(netns.name, "nftables") == held_now
    status = json.loads(stockade(["status", "--netns", netns.name, "--json"], state).stdout)
    assert not status["drift"], status["drift_lines"][:10]
