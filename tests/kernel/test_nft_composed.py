"""`stockade analyze` on a host where three rulesets share the input hook, checked with real TCP connects:
stockade's own nftables table (compiled from a policy), a Docker-style iptables-nft `ip filter` table (loaded
by iptables-nft-restore) and a firewalld-style `inet firewalld` table. The host's whole ruleset is read back
as --live reads it (kernel/live.py whole_ruleset) and every (client, port) pair the service matrix decides is
connected to for real: an "always" edge must connect, a missing edge must not."""
from __future__ import annotations

import ipaddress
import time

from stockade.kernel.host import Host
from stockade.kernel.live import whole_ruleset
from stockade.kernel.netns import Netns
from stockade.model import Family
from stockade.policy.compile import compile_policy
from stockade.policy.output import write_outputs
from stockade.semantics.cellmatrix import cell_matrix
from stockade.semantics.cells import Space
from stockade.semantics.matrix import Service
from stockade.semantics.nftcells import NftOracle

SERVER = "203.0.113.1"
CLIENTS = ("203.0.113.10", "203.0.113.20", "203.0.113.30")
PORTS = (22, 80, 443, 8080)
POLICY = """[server]
interfaces = ["in0"]

[groups]
admins = ["203.0.113.16/29"]

[defaults]
closed = "reject"

[[allow]]
service = "ssh"
from = ["admins"]

[[allow]]
service = ["http", "https"]

[[allow]]
service = "8080/tcp"
"""
DOCKER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A INPUT -s 203.0.113.30/32 -p tcp -m tcp --dport 443 -j DROP
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
"""
FIREWALLD = """table inet firewalld {
    chain filter_INPUT {
        type filter hook input priority filter + 10; policy accept;
        ct state established,related accept
        iifname "lo" accept
        jump filter_INPUT_ZONES
        reject with icmpx admin-prohibited
    }
    chain filter_INPUT_ZONES {
        iifname "in0" goto filter_IN_public
        goto filter_IN_public
    }
    chain filter_IN_public {
        tcp dport { 22, 443, 8080 } ct state new,untracked accept
        icmp type echo-request accept
    }
}
"""
LISTEN = ("import socket,sys,time\nss=[]\nfor p in sys.argv[1:]:\n s=socket.socket(); "
          "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',int(p))); s.listen(64); "
          "ss.append(s)\nprint('up',flush=True)\ntime.sleep(600)\n")
CONNECT = ("import socket,sys\ns=socket.socket(); s.settimeout(1.5); s.bind((sys.argv[1],0))\n"
           "try:\n s.connect((sys.argv[2],int(sys.argv[3]))); print('open')\nexcept OSError as e:\n print('closed', e)\n")


def _status(m, src: str, dst: str) -> str:
    def cls(addr: str) -> int:
        a = int(ipaddress.ip_address(addr))
        return next(i for i, c in enumerate(m.classes) if any(lo <= a <= hi for lo, hi in c))
    edge = (cls(src), cls(dst))
    return "always" if edge in m.always else "may" if edge in m.may else "never"


def test_composed_analysis_agrees_with_real_connects(tmp_path, kernel_ok):
    (tmp_path / "policy.toml").write_text(POLICY)
    written = write_outputs(compile_policy(tmp_path / "policy.toml"), "nftables", tmp_path / "out")
    own = next(p for p in written if p.suffix == ".nft")
    (tmp_path / "firewalld.nft").write_text(FIREWALLD)
    with Netns() as server, Netns() as client:
        server.run(["ip", "link", "add", "in0", "type", "veth", "peer", "name", "wan0", "netns", client.name])
        server.run(["ip", "addr", "add", f"{SERVER}/24", "dev", "in0"])
        server.run(["ip", "link", "set", "in0", "up"])
        for addr in CLIENTS:
            client.run(["ip", "addr", "add", f"{addr}/24", "dev", "wan0", "nodad"])
        client.run(["ip", "link", "set", "wan0", "up"])
        server.run(["nft", "-f", str(own)])
        server.run(["iptables-nft-restore", "--noflush"], input=DOCKER)
        server.run(["nft", "-f", str(tmp_path / "firewalld.nft")])
        listener = server.spawn(["python3", "-c", LISTEN, *map(str, PORTS)], stdout=-1, text=True)
        try:
            assert listener.stdout.readline().strip() == "up"
            time.sleep(0.5)  # the veth carrier
            nft, iptables = whole_ruleset(Host(server.name))
            assert {t.label for t in nft.tables} >= {"inet stockade", "inet firewalld"}, nft.tables
            assert iptables[Family.IPV4].tables["filter"].chains["INPUT"].rules  # the Docker-style table
            side = NftOracle(nft, iptables)
            space = Space(Family.IPV4, side.rulesets(Family.IPV4), side.names())
            space.other_tables = space.other_tables or side.nat()
            checked, wrong, seen = 0, [], set()
            for port in PORTS:
                m = cell_matrix(side, space, Service(6, port, 40000), "INPUT", iif="in0")
                for src in CLIENTS:
                    status = _status(m, src, SERVER)
                    seen.add((port, src, status))
                    out = client.run(["python3", "-c", CONNECT, src, SERVER, str(port)]).stdout
                    connected = out.startswith("open")
                    if status == "may" or connected != (status == "always"):
                        wrong.append(f"tcp/{port} from {src}: analysis {status}, kernel "
                                     f"{'connected' if connected else out.strip()}")
                    checked += 1
        finally:
            listener.kill()
            listener.wait()
    assert not wrong, "\n".join(wrong)
    assert checked == len(PORTS) * len(CLIENTS)
    # the composition matters: each table closes something the others open
    assert (80, "203.0.113.10", "never") in seen  # stockade allows http, firewalld rejects it
    assert (443, "203.0.113.30", "never") in seen  # the Docker-style table drops it
    assert (443, "203.0.113.10", "always") in seen
    assert (22, "203.0.113.20", "always") in seen and (22, "203.0.113.10", "never") in seen  # admins only
