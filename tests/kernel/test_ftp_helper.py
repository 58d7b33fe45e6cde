"""The FTP helper a policy's `ftp` service attaches, with real connections: a client opens the control
connection to port 21, the server answers PASV (IPv4, `227`) or EPSV (IPv6, `229`) with a data port the
policy does not open, and the client's data connection gets through only as RELATED, i.e. only if the
kernel's ftp helper saw the answer. iptables attaches it in raw PREROUTING (`-j CT --helper ftp`), nft
in filter INPUT just after the established rule (render/nft/layout.py); the same policy with `21/tcp`
instead of `ftp` (no helper) must block the data connection on both back ends, so the test can fail."""
from __future__ import annotations

import subprocess
import sys

import pytest

from stockade.lab.topology import SERVER_V4, SERVER_V6, Topology
from stockade.model import Family
from stockade.policy.compile import compile_policy
from stockade.policy.output import render_outputs

DATA_PORT = 50021
SERVER = {Family.IPV4: SERVER_V4, Family.IPV6: SERVER_V6}
# The server: for each connection to port 21, a data listener and the passive-mode answer naming it.
FTPD = r"""
import socket, sys
family, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
af = socket.AF_INET if family == "4" else socket.AF_INET6
ctl = socket.socket(af); ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); ctl.bind((addr, 21)); ctl.listen()
data = socket.socket(af); data.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); data.bind((addr, port))
data.listen()
print("ready", flush=True)
while True:
    conn, _ = ctl.accept()
    conn.sendall(b"220 ready\r\n")
    conn.recv(100)  # the client's PASV or EPSV
    if family == "4":
        a = addr.replace(".", ",")
        conn.sendall(f"227 Entering Passive Mode ({a},{port >> 8},{port & 255})\r\n".encode())
    else:
        conn.sendall(f"229 Entering Extended Passive Mode (|||{port}|)\r\n".encode())
    data.settimeout(3)
    try:
        d, _ = data.accept()
        d.sendall(b"hello")
        d.close()
    except OSError:
        pass
    conn.close()
"""
# The client: prints `data` if the data connection opened, else `blocked`.
FTP = r"""
import socket, sys, time
family, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
af = socket.AF_INET if family == "4" else socket.AF_INET6
ctl = socket.create_connection((addr, 21), timeout=5)
ctl.recv(100)
ctl.sendall(b"PASV\r\n" if family == "4" else b"EPSV\r\n")
ctl.recv(100)
try:
    d = socket.create_connection((addr, port), timeout=2)
    print("data" if d.recv(5) == b"hello" else "wrong")
except OSError:
    print("blocked")
"""


def load(server, backend: str, policy) -> None:
    out = render_outputs(compile_policy(policy), backend)
    if backend == "nftables":
        server.run(["nft", "-f", "-"], input=out["ruleset.nft"])
        listed = server.run(["nft", "list", "table", "inet", "stockade"]).stdout
        helper = [line for line in listed.splitlines() if "ct helper set" in line]
        assert "hook prerouting" not in listed and len(helper) <= 1, listed
        return
    server.run(["ipset", "restore"], input=out["ipsets"])
    server.run(["iptables-restore"], input=out["rules.v4"])
    server.run(["ip6tables-restore"], input=out["rules.v6"])


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@pytest.mark.parametrize(("service", "expected"), [("ftp", "data"), ("21/tcp", "blocked")])
def test_ftp_data_connection_is_related_only_with_the_helper(kernel_ok, tmp_path, backend, service, expected):
    policy = tmp_path / "ftp.toml"
    policy.write_text(f'[server]\ninterfaces = ["in0"]\n\n[[allow]]\nservice = "{service}"\n')
    with Topology() as t:
        load(t.server, backend, policy)
        got = {}
        for family in Family:
            addr = SERVER[family]
            server = t.server.spawn([sys.executable, "-c", FTPD, str(int(family)), addr, str(DATA_PORT)],
                                    stdout=subprocess.PIPE, text=True)
            try:
                assert server.stdout.readline().strip() == "ready"
                got[family] = t.client.run([sys.executable, "-c", FTP, str(int(family)), addr,
                                            str(DATA_PORT)]).stdout.strip()
            finally:
                server.kill()
                server.wait()
        assert got == {Family.IPV4: expected, Family.IPV6: expected}
