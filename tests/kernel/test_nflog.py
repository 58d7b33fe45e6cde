"""Issue 16, item 3, NFLOG: a policy with `[log] target = "nflog"` applied with the real CLI to a lab server
(iptables-nft, then nftables); `stockade logs --source nflog --netns SERVER` listens on the policy's group
inside the server's namespace before the client sends packets that four policy lines drop and log (a
closed port, NULL and XMAS scans, a flow opened without SYN, a burst of 400 UDP datagrams), and is
stopped with SIGTERM after the kernel's counters are read. Every NFLOG message must be attributed to its policy line, each line's count
equal to the packet counter of its NFLOG rule (iptables-nft-save -c of both families; nft's JSON listing),
no message lost or foreign. No kernel log and no global switch are involved: NFLOG groups are per
namespace. Also: the listener stops by itself after --for, a second listener on a bound group is refused
with exit 2 and a message, and --group 0 hears nothing of a policy logging to another group.
"""
from __future__ import annotations

import json
import select
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime

import pytest

from stockade.kernel.logs import stockade_prefixes
from stockade.lab.topology import CLIENT_V4, CLIENT_V6, SERVER_IN, SERVER_V4, SERVER_V6, Topology
from stockade.policy.compile import compile_policy

from .applylab import PY, STOCKADE, env, stockade
from .test_logs import log_counters, traffic

GROUP = 7
CLOSED_LINE = 11  # `closed = "drop"`
POLICY = f"""[server]
interfaces = ["{SERVER_IN}"]

[log]
target = "nflog"
group = {GROUP}
rate = "100/s"
burst = 1000

[defaults]
closed = "drop"

[[allow]]
service = "http"
"""


BURST = ("import socket,sys\nfor a in sys.argv[1:]:\n s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET,"
         " socket.SOCK_DGRAM)\n for i in range(200): s.sendto(b'x', (a, 5000))\n")  # to a closed port, as fast as it goes


def start(args: list[str], state) -> subprocess.Popen:
    """`stockade logs ARGS` running; returns once it says it listens (KernelError text otherwise)."""
    proc = subprocess.Popen([STOCKADE, "logs", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(state))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 1)[0]:
            line = proc.stderr.readline()
            if "listening on NFLOG group" in line:
                return proc
            if not line:
                break
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the listener did not start (exit {proc.returncode}): {err}")


def stop(proc: subprocess.Popen) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_nflog_messages_are_attributed_as_the_counters_say(kernel_ok, tmp_path, backend, capsys):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    known = stockade_prefixes(compile_policy(path).rulesets.values())
    assert {k.group for k in known.values()} == {GROUP}
    state = tmp_path / "state"
    with Topology() as topo:
        ns = topo.server.name
        stockade(["apply", str(path), "--netns", ns, "--backend", backend, "--confirm-timeout", "0"], state)
        if backend == "iptables-nft":
            saved = topo.server.run(["iptables-nft-save"]).stdout
            assert f'-j NFLOG --nflog-prefix "stockade-drop: L{CLOSED_LINE} " --nflog-group {GROUP}' in saved
        else:
            listed = topo.server.run(["nft", "list", "table", "inet", "stockade"]).stdout
            assert f'log prefix "stockade-drop: L{CLOSED_LINE} " group {GROUP}' in listed
        status = json.loads(stockade(["status", "--netns", ns, "--json"], state).stdout)
        assert not status["drift"], status["drift_lines"]  # the kernel holds NFLOG as stockade wrote it
        html = tmp_path / "nflog.html"
        proc = start(["--source", "nflog", "--netns", ns, "--policy", str(path), "--json", "--html", str(html)], state)
        try:
            traffic(topo.client)
            topo.client.run([PY, "-c", BURST, SERVER_V4, SERVER_V6])
            time.sleep(0.5)
            expected = log_counters(topo.server, known, backend)
        finally:
            out = stop(proc)
    got = Counter({r["line"]: r["count"] for r in out["lines"]})
    assert out["lost"] == 0 and not out["foreign"], (out["lost"], out["foreign"])
    assert out["logged"] == out["read"] == sum(expected.values()) > 0
    assert got == +expected, (got, expected)
    tags = {t.rpartition(":")[2] for t in got}
    assert {"protect.null", "protect.xmas", "protect.new_without_syn", str(CLOSED_LINE)} <= tags, tags
    assert {s["source"] for s in out["sources"]} == {CLIENT_V4, CLIENT_V6}
    assert {"tcp/22", "tcp/25", "tcp/8080", "tcp/81"} <= {p["port"] for p in out["ports"]}
    assert {p["port"]: p["count"] for p in out["ports"]}["udp/5000"] == 400  # a burst: none lost
    assert abs(time.time() - datetime.fromisoformat(out["last"]).timestamp()) < 600  # the kernel's stamps
    page = html.read_text()
    assert "p.toml:protect.xmas" in page and f"{out['logged']} NFLOG messages of {out['read']} read" in page
    with capsys.disabled():
        print(f"\n{backend}: {out['logged']} NFLOG messages, per policy line {dict(got)}")


def test_nflog_for_seconds_busy_group_and_other_group(kernel_ok, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    state = tmp_path / "state"
    with Topology() as topo:
        ns = topo.server.name
        stockade(["apply", str(path), "--netns", ns, "--backend", "nftables", "--confirm-timeout", "0"], state)
        t0 = time.monotonic()
        quiet = stockade(["logs", "--source", "nflog", "--netns", ns, "--group", "0", "--for", "2",
                          "--policy", str(path), "--json"], state)
        assert 2 <= time.monotonic() - t0 < 30
        assert "logs to NFLOG group 7, not 0" in quiet.stderr
        first = start(["--source", "nflog", "--netns", ns, "--policy", str(path), "--json"], state)
        try:
            traffic(topo.client)  # group 7 is heard by `first` only
            busy = stockade(["logs", "--source", "nflog", "--netns", ns, "--group", str(GROUP), "--for", "5"],
                            state, check=False)
        finally:
            heard = stop(first)
    assert json.loads(quiet.stdout)["logged"] == 0
    assert busy.returncode == 2 and "already has a listener" in busy.stderr and "Traceback" not in busy.stderr
    assert heard["logged"] > 0


def test_nflog_without_cap_net_admin_is_refused(netns, tmp_path):
    """Inside a namespace, without CAP_NET_ADMIN: the kernel refuses the bind; exit 2 and a message."""
    r = subprocess.run(netns.argv(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", STOCKADE, "logs",
                                   "--source", "nflog", "--group", "3", "--for", "5"]),
                       capture_output=True, text=True, env=env(tmp_path / "state"), timeout=60)
    assert r.returncode == 2 and "needs CAP_NET_ADMIN" in r.stderr and "Traceback" not in r.stderr, r.stderr
