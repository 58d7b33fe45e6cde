"""Issue 16, item 2, in the kernel: bans are elements of the policy's ban set, survive `apply` and
rollbacks with the time they have left, cost no rule, and the real fail2ban bans through stockade's action.

- test_bans_survive_apply_and_rollback (iptables-nft and nftables): the client is banned with
  `stockade ban`; a real TCP connect to the allowed port then fails; the ban outlives an apply of
  another policy and a `stockade rollback` of it; status lists it with its expiry and reports no drift;
  `stockade unban` lets the client in again.
- test_ten_thousand_bans_cost_one_rule: 10,000 addresses in the live ban set leave the number of rules
  as it was; all 10,000 are still there after another apply.
- test_fail2ban_bans_through_stockade: the Debian fail2ban-server runs inside the server namespace
  (`ip netns exec`), with a private configuration directory, socket, pid file and database under the
  test's tmp dir, and a jail reading a log file the test writes fail2ban's own sshd test lines into
  (failed logins from the client's address). fail2ban calls action.d/stockade.conf (installed with
  `stockade integrate fail2ban --root`), the client ends banned, and the ban outlives an apply.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.lab.topology import CLIENT_V4, SERVER_IN, SERVER_V4, Topology

from .applylab import STOCKADE, connects, env, listen, stockade, wait_until
from .conftest import CI

POLICY = """[server]
interfaces = ["{iface}"]

[bans]
timeout = 900

[[allow]]
service = ["ssh", "{other}"]
"""


def write(tmp: Path, name: str, other: str) -> Path:
    p = tmp / name
    p.write_text(POLICY.format(iface=SERVER_IN, other=other))
    return p


def status(ns, state: Path) -> dict:
    return json.loads(stockade(["status", "--netns", ns.name, "--json"], state).stdout)


def rule_count(ns, backend: str) -> int:
    if backend == "nftables":
        text = ns.run(["nft", "list", "table", "inet", "stockade"]).stdout
        return sum(1 for ln in text.splitlines() if " counter " in f" {ln.strip()} ")
    return sum(ln.startswith("-A ") for tool in ("iptables-nft-save", "ip6tables-nft-save")
               for ln in ns.run([tool]).stdout.splitlines())


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_bans_survive_apply_and_rollback(kernel_ok, tmp_path, backend):
    one, two = write(tmp_path, "one.toml", "http"), write(tmp_path, "two.toml", "https")
    state = tmp_path / "state"
    with Topology() as topo:
        ns = ["--netns", topo.server.name]
        listen(topo.server, [22])
        stockade(["apply", str(one), *ns, "--backend", backend, "--confirm-timeout", "0"], state)
        assert connects(topo.client, SERVER_V4, 22)
        stockade(["ban", CLIENT_V4, *ns, "--timeout", "600"], state)
        assert not connects(topo.client, SERVER_V4, 22)
        s = status(topo.server, state)
        assert [b["address"] for b in s["bans"]] == [CLIENT_V4] and 590 <= s["bans"][0]["expires_in"] <= 600
        assert not s["drift"], s["drift_lines"]
        version = s["live_version"]
        stockade(["apply", str(two), *ns, "--confirm-timeout", "60"], state)
        assert not connects(topo.client, SERVER_V4, 22)  # carried into the new generation
        stockade(["rollback", *ns], state)
        assert status(topo.server, state)["live_version"] == version
        assert not connects(topo.client, SERVER_V4, 22)  # and back into the old one
        s = status(topo.server, state)
        assert [b["address"] for b in s["bans"]] == [CLIENT_V4] and 500 <= s["bans"][0]["expires_in"] <= 600
        assert not s["drift"]
        stockade(["unban", CLIENT_V4, *ns], state)
        assert connects(topo.client, SERVER_V4, 22)
        assert status(topo.server, state)["bans"] == []


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_ten_thousand_bans_cost_one_rule(kernel_ok, tmp_path, backend):
    one, two = write(tmp_path, "one.toml", "http"), write(tmp_path, "two.toml", "https")
    state = tmp_path / "state"
    addrs = [f"10.{i >> 8 & 255}.{i & 255}.1" for i in range(10_000)]
    with Topology() as topo:
        ns = ["--netns", topo.server.name]
        stockade(["apply", str(one), *ns, "--backend", backend, "--confirm-timeout", "0"], state)
        before = rule_count(topo.server, backend)
        started = time.monotonic()
        stockade(["apply", str(two), *ns, "--confirm-timeout", "0"], state)
        stockade(["apply", str(one), *ns, "--confirm-timeout", "0"], state)
        baseline = (time.monotonic() - started) / 2  # the same apply with no bans, for the figure below
        if backend == "nftables":
            for i in range(0, len(addrs), 2000):
                topo.server.run(["nft", "add", "element", "inet", "stockade", "ip_stk-bans4",
                                 "{ " + ", ".join(f"{a} timeout 900s" for a in addrs[i:i + 2000]) + " }"])
        else:
            name = re.search(r"--match-set (stk-bans4-[abc]) ", topo.server.run(["iptables-nft-save"]).stdout)[1]
            topo.server.run(["ipset", "restore"], input="".join(f"add {name} {a} timeout 900\n" for a in addrs))
        assert len(status(topo.server, state)["bans"]) == 10_000
        assert rule_count(topo.server, backend) == before
        started = time.monotonic()
        stockade(["apply", str(two), *ns, "--confirm-timeout", "0"], state)
        took = time.monotonic() - started
        s = status(topo.server, state)
        assert len(s["bans"]) == 10_000 and not s["drift"]
        assert rule_count(topo.server, backend) == before
        print(f"{backend}: apply carrying 10,000 bans took {took:.2f} s, without bans {baseline:.2f} s "
              f"(load {os.getloadavg()[0]:.1f})")


# fail2ban's own test lines (fail2ban/tests/files/logs/sshd), the address replaced by the client's
SSHD_FAILURES = [
    "{t} srv sshd[{pid}]: Failed password for invalid user root from {ip} port 5{n:04d} ssh2",
    "{t} srv sshd[{pid}]: Invalid user admin from {ip} port 5{n:04d}",
    "{t} srv sshd[{pid}]: Failed password for root from {ip} port 5{n:04d} ssh2",
]
JAIL = """[DEFAULT]
backend = polling
action = stockade[stockade="{stockade}"]
bantime = 600
findtime = 600
maxretry = 3
usedns = no
dbfile = :memory:

[sshd]
enabled = true
filter = sshd
logpath = {log}
"""
FAIL2BAN_CONF = """[Definition]
loglevel = INFO
logtarget = {dir}/fail2ban.log
socket = {dir}/fail2ban.sock
pidfile = {dir}/fail2ban.pid
dbfile = :memory:
"""


def test_fail2ban_bans_through_stockade(kernel_ok, tmp_path):
    server_bin = shutil.which("fail2ban-server")
    if server_bin is None or not Path("/etc/fail2ban/filter.d/sshd.conf").exists():
        pytest.fail("fail2ban is not installed") if CI else pytest.skip("fail2ban is not installed")
    conf = tmp_path / "f2b"  # a private copy: filter.d from the package, jail and action of the test's own
    shutil.copytree("/etc/fail2ban", conf, ignore=shutil.ignore_patterns("jail.d", "jail.local", "*.local"))
    (conf / "jail.conf").write_text("")
    (conf / "jail.local").unlink(missing_ok=True)
    (conf / "action.d" / "stockade.conf").unlink(missing_ok=True)
    (tmp_path / "root/etc/fail2ban/action.d").mkdir(parents=True)  # a machine with fail2ban installed
    stockade(["integrate", "fail2ban", "--root", str(tmp_path / "root")], tmp_path / "state")
    installed = tmp_path / "root/etc/fail2ban/action.d/stockade.conf"
    shutil.copy(installed, conf / "action.d" / "stockade.conf")
    run = tmp_path / "run"
    run.mkdir()
    log = tmp_path / "auth.log"
    log.write_text("")
    (conf / "fail2ban.local").write_text(FAIL2BAN_CONF.format(dir=run))
    (conf / "jail.local").write_text(JAIL.format(stockade=STOCKADE, log=log))
    policy, state = write(tmp_path, "one.toml", "http"), tmp_path / "state"
    with Topology() as topo:
        ns = ["--netns", topo.server.name]
        listen(topo.server, [22])
        stockade(["apply", str(policy), *ns, "--confirm-timeout", "0"], state)
        assert connects(topo.client, SERVER_V4, 22)
        f2b_env = {**env(state), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        server = subprocess.Popen(["ip", "netns", "exec", topo.server.name, server_bin, "-f", "-x", "-c", str(conf),
                                   "-s", str(run / "fail2ban.sock"), "-p", str(run / "fail2ban.pid"), "--logtarget",
                                   str(run / "fail2ban.log"), "start"], env=f2b_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_until(lambda: "Jail 'sshd' started" in _read(run / "fail2ban.log"), 30), _read(run / "fail2ban.log")
            now = time.strftime("%b %d %H:%M:%S")
            with log.open("a") as f:
                for n, line in enumerate(SSHD_FAILURES * 2):
                    f.write(line.format(t=now, pid=1000 + n, ip=CLIENT_V4, n=n) + "\n")
            banned = wait_until(lambda: CLIENT_V4 in [b["address"] for b in status(topo.server, state)["bans"]], 30)
            assert banned is not None, _read(run / "fail2ban.log")
            assert f"Ban {CLIENT_V4}" in _read(run / "fail2ban.log")
            assert not (state / "host").exists()  # the action found its namespace's state (and lock) itself
            assert not connects(topo.client, SERVER_V4, 22)
            stockade(["apply", str(write(tmp_path, "two.toml", "https")), *ns, "--confirm-timeout", "0"], state)
            assert not connects(topo.client, SERVER_V4, 22)
            s = status(topo.server, state)
            assert [b["address"] for b in s["bans"]] == [CLIENT_V4] and 0 < s["bans"][0]["expires_in"] <= 600
        finally:
            subprocess.run([shutil.which("fail2ban-client") or "fail2ban-client", "-s", str(run / "fail2ban.sock"),
                            "stop"], capture_output=True, timeout=30, check=False, env=f2b_env)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        assert f"Unban {CLIENT_V4}" in _read(run / "fail2ban.log")  # fail2ban unbans on stop, through stockade
        assert status(topo.server, state)["bans"] == []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
