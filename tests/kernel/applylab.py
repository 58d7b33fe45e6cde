"""Shared pieces of the tests/kernel/test_apply_* tests: policies, the real `stockade` CLI run
against a namespace, TCP listeners and clients (real sockets), and reading what is live."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from stockade.kernel.live import drop_dynamic_elements
from stockade.kernel.netns import NetnsError
from stockade.kernel.part import logical

STOCKADE = str(Path(sys.executable).with_name("stockade"))
PY = sys.executable

# The client (192.0.2.2 / 2001:db8::2) is the admin in OLD; NEW leaves it out and opens nothing it uses.
OLD = """admin = ["admins"]
[server]
interfaces = ["in0"]
[groups]
admins = ["192.0.2.2", "2001:db8::2"]
[[allow]]
service = "http"
"""
NEW = """admin = ["admins"]
[server]
interfaces = ["in0"]
[groups]
admins = ["198.51.100.7"]
[[allow]]
service = "https"
"""


def policies(tmp: Path) -> tuple[Path, Path]:
    a, b = tmp / "old.toml", tmp / "new.toml"
    a.write_text(OLD)
    b.write_text(NEW)
    return a, b


def env(state_dir: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    return {**e, "STOCKADE_STATE_DIR": str(state_dir), **extra}


def stockade(args: list[str], state_dir: Path, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([STOCKADE, *args], capture_output=True, text=True, env=env(state_dir, **extra), check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"stockade {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def live_version(ns: str, state_dir: Path) -> str:
    return json.loads(stockade(["status", "--netns", ns, "--json"], state_dir).stdout)["live_version"]


def full_text(ns, backend: str) -> str:
    """Everything live in the namespace, comparable: iptables-save of both families (no comment lines,
    no policy counters: the namespace's own ND/MLD packets move them; set generations dropped) and the
    nft ruleset without counters and what meters learnt."""
    if backend == "nftables":
        return drop_dynamic_elements(ns.run(["nft", "-s", "list", "ruleset"]).stdout)
    kind = backend.split("-", 1)[1]
    out = ""
    for tool in (f"iptables-{kind}-save", f"ip6tables-{kind}-save"):
        out += "".join(re.sub(r" \[\d+:\d+\]$", " [0:0]", ln) + "\n" for ln in ns.run([tool]).stdout.splitlines()
                       if not ln.startswith("#"))
    return logical(out)


LISTENER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); s.bind(("::", port)); s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    try:
        while (d := c.recv(65536)):
            c.sendall(d)
    except OSError:
        pass
    c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def listen(ns, ports: list[int]) -> subprocess.Popen:
    """An echo server on `ports` (IPv4 and IPv6) in the namespace; killed with it."""
    p = ns.spawn([PY, "-c", LISTENER, *map(str, ports)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def connects(ns, addr: str, port: int, timeout: float = 1.0) -> bool:
    """Does a real TCP connect from the namespace get an answer (SYN through, SYN/ACK back)?"""
    code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), "
            f"timeout={timeout})\nexcept OSError:\n sys.exit(1)")
    return ns.run([PY, "-c", code, addr, str(port)], check=False).returncode == 0


def wait_until(pred, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until pred() holds, None if it did not within `timeout`. A save tool that fails while
    another process changes the ruleset under it (iptables-nft-save 1.8.9: "Set with index N in kernel
    doesn't exist", a set deleted between its two reads) is asked again: only its answer counts."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if pred():
                return time.monotonic() - start
        except NetnsError as e:
            if "in kernel doesn't exist" not in e.stderr:
                raise
        time.sleep(step)
    return None
