"""Issue 16, item 3, in the kernel: a LOG stream made by real packets through a stockade ruleset is
attributed by `stockade logs` to the right policy lines, and its HTML page renders in headless Chromium.

The policy is applied with the real CLI to a lab server (iptables-nft, then nftables); `net.netfilter.nf_log_all_netns`
is set to 1 for the test (LOG in a namespace writes to the kernel log only then) and put back after.
The kernel log is read from /dev/kmsg from its end before the traffic; only lines with this test's own
prefix are kept (other processes may log too). The client sends packets that four different policy
lines drop and log (a closed port, NULL and XMAS scans, a non-SYN TCP packet opening a flow). Each
line's count in `stockade logs --json` must equal the packet counter of that line's LOG rule in the
kernel (iptables-save -c, both families; nft's JSON listing), and every logged line must be stockade's.
The same stream is then read from the journal (`--source journal`, `journalctl -k`): a private
systemd-journald in a private mount namespace (tmpfs on /run/systemd, /run/log and /var/log) reads
the kernel ring into its own journal, and `stockade logs` runs beside it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from stockade.kernel.logs import stockade_prefixes
from stockade.lab.topology import SERVER_IN, SERVER_V4, SERVER_V6, Topology
from stockade.policy.compile import compile_policy

from .applylab import PY, stockade
from .conftest import CI

SYSCTL = Path("/proc/sys/net/netfilter/nf_log_all_netns")
POLICY = """[server]
interfaces = ["{iface}"]

[log]
prefix = "{prefix}"
rate = "100/s"
burst = 1000

[defaults]
closed = "drop"

[[allow]]
service = "http"
"""
CLOSED_LINE = 10  # `closed = "drop"`


def kmsg_after(fd: int) -> list[str]:
    """Every /dev/kmsg record from `fd`'s position on (non-blocking)."""
    out = []
    while True:
        try:
            out.append(os.read(fd, 8192).decode("utf-8", "replace"))
        except BlockingIOError:
            return out
        except BrokenPipeError:  # records overwritten while reading: skip to the next
            continue


def traffic(client) -> None:
    code = ("import socket,sys\nfor a in sys.argv[1:]:\n for p in (22, 25, 8080):\n"
            "  try: socket.create_connection((a, p), timeout=0.3).close()\n  except OSError: pass\n")
    client.run([PY, "-c", code, SERVER_V4, SERVER_V6])
    for flags in ([], ["-F", "-S", "-R", "-P", "-A", "-U"], ["-A"]):  # NULL, XMAS, a flow opened without SYN
        client.run(["hping3", "-q", "-c", "3", "-i", "u20000", *flags, "-p", "81", SERVER_V4], check=False)


def log_counters(ns, known, backend: str) -> Counter:
    """The packets of each stockade LOG (or NFLOG) rule in the kernel, per policy line."""
    chains = {k.chain: k.tag for k in known.values()}
    out = Counter()
    if backend == "nftables":
        for item in json.loads(ns.run(["nft", "-j", "list", "table", "inet", "stockade"]).stdout)["nftables"]:
            rule = item.get("rule")
            if rule and any("log" in e for e in rule["expr"]):
                chain = rule["chain"].split("_", 1)[1]  # ip_stk-log-L10 / ip6_stk-log-L10
                out[chains[chain]] += next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        return out
    for tool in ("iptables-nft-save", "ip6tables-nft-save"):
        for line in ns.run([tool, "-c"]).stdout.splitlines():
            m = re.match(r"\[(\d+):\d+\] -A (stk-log-\S+) .* -j (?:LOG|NFLOG) ", line)
            if m:
                out[chains[m.group(2)]] += int(m.group(1))
    return out


@pytest.fixture
def nf_log_all_netns(kernel_ok):
    if not SYSCTL.exists():
        pytest.fail("no net.netfilter.nf_log_all_netns here") if CI else pytest.skip("no nf_log_all_netns")
    old = SYSCTL.read_text().strip()
    SYSCTL.write_text("1\n")
    try:
        yield
    finally:
        SYSCTL.write_text(f"{old}\n")


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_logs_attribute_every_line_to_its_policy_line(nf_log_all_netns, tmp_path, backend):
    prefix = f"sk{os.getpid() % 100000}{backend[0]}: "  # one per run: the journal holds the whole ring
    path = tmp_path / "p.toml"
    path.write_text(POLICY.format(iface=SERVER_IN, prefix=prefix))
    known = stockade_prefixes(compile_policy(path).rulesets.values())
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        with Topology() as topo:
            stockade(["apply", str(path), "--netns", topo.server.name, "--backend", backend,
                      "--confirm-timeout", "0"], tmp_path / "state")
            traffic(topo.client)
            time.sleep(0.5)
            expected = log_counters(topo.server, known, backend)
        records = [r for r in kmsg_after(fd) if prefix in r]
    finally:
        os.close(fd)
    log = tmp_path / "kmsg.log"
    log.write_text("".join(r if r.endswith("\n") else r + "\n" for r in records))
    html = tmp_path / "logs.html"
    out = json.loads(stockade(["logs", "--source", str(log), "--policy", str(path), "--json", "--html", str(html)],
                              tmp_path / "state").stdout)
    got = Counter({r["line"]: r["count"] for r in out["lines"]})
    assert not out["foreign"], out["foreign"]
    assert out["logged"] == len(records) == sum(expected.values())
    assert got == +expected, (got, expected)
    tags = {t.rpartition(":")[2] for t in got}
    assert {"protect.null", "protect.xmas", "protect.new_without_syn"} <= tags, tags
    assert str(CLOSED_LINE) in tags  # closed ports: the line that says they are dropped
    render(html, tmp_path)
    journal = from_journal(prefix, len(records), ["logs", "--source", "journal", "--policy", str(path), "--json"],
                           tmp_path / "state")
    assert Counter({r["line"]: r["count"] for r in journal["lines"]}) == +expected
    assert not [f for f in journal["foreign"] if prefix.strip() in json.dumps(f)]


JOURNAL = r"""
import subprocess, sys, time
for d in ("/run/systemd", "/run/log", "/var/log"):
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)
subprocess.run(["mkdir", "-p", "/run/systemd/journal"], check=True)
prefix, want, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
jd = subprocess.Popen(["/lib/systemd/systemd-journald"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = subprocess.run(["journalctl", "-k", "--no-pager", "-o", "cat"], capture_output=True, text=True).stdout
        if seen.count(prefix) >= want:
            break
        time.sleep(0.2)
    sys.stdout.write(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
finally:
    jd.kill()
"""


def from_journal(prefix: str, want: int, args: list[str], state: Path) -> dict:
    """`stockade ARGS` beside a private journald that has read the kernel ring (see the module docstring)."""
    if not Path("/lib/systemd/systemd-journald").exists() or not shutil.which("journalctl"):
        pytest.fail("no systemd-journald/journalctl (Debian package systemd)") if CI else pytest.skip("no journald")
    from .applylab import STOCKADE, env
    r = subprocess.run(["unshare", "-m", "--propagation", "private", PY, "-c", JOURNAL, prefix, str(want), STOCKADE,
                        *args], capture_output=True, text=True, env=env(state), timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def render(html: Path, tmp: Path) -> None:
    """The page in headless Chromium: no console message, the three plots drawn with data."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("no chromium (Debian package chromium)") if CI else pytest.skip("no chromium")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=10000", "--enable-logging=stderr", "--log-level=0", f"--user-data-dir={tmp / 'c'}"]
    dom = subprocess.run([*base, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert ":CONSOLE" not in dom.stderr, [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    for plot in ("drops", "sources", "ports"):
        m = re.search(rf'<div id="{plot}" class="[^"]*js-plotly-plot[^"]*".*?(?=<div id="|<h2>|</body>)', dom.stdout,
                      re.DOTALL)
        assert m and "main-svg" in m.group(0), f"plot {plot} not drawn"
        drawn = m.group(0)
        assert ('class="point"' in drawn and re.search(r'<path d="M[^"]+"', drawn)) or 'class="hm"' in drawn, plot
    shot = tmp / "logs.png"
    subprocess.run([*base, "--window-size=1300,2400", f"--screenshot={shot}", html.as_uri()], capture_output=True,
                   timeout=120, check=True)
    assert shot.stat().st_size > 20000
    keep = os.environ.get("STOCKADE_LOGS_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
