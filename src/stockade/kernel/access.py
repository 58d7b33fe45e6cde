"""The pre-apply check: would the new policy cut the admin off from sshd?

Who must keep access: the SSH clients of this session (SSH_CONNECTION / SSH_CLIENT) and of every
established connection to sshd's listening port(s) in the namespace (`ss`), and every member of
the policy's admin groups (a network by its first and last address and a few inside). For each,
the simulator runs the compiled new ruleset on a NEW SYN to the port and, for live sessions, on
an ESTABLISHED packet of the session; anything but ACCEPT is a lockout.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from ..model import Family
from ..model.packet import Packet
from ..policy.compile import CompiledPolicy
from ..semantics.simulate import Simulator
from .host import Host

DEFAULT_PORT = 22
SAMPLES_INSIDE = 3


@dataclass(frozen=True)
class AccessProbe:
    who: str  # "ssh session", "ssh client (ss)", "admin group NAME"
    src: str
    dst: str
    port: int
    iif: str | None
    established: bool
    verdict: str = ""

    def to_json(self) -> dict:
        return {"who": self.who, "src": self.src, "dst": self.dst, "port": self.port, "iif": self.iif,
                "packet": "ESTABLISHED" if self.established else "NEW SYN", "verdict": self.verdict}


def _strip(addr: str) -> str:
    addr = addr.strip("[]")
    return addr.split("%", 1)[0].removeprefix("::ffff:") if addr.startswith("::ffff:") and "." in addr else \
        addr.split("%", 1)[0]


def sshd_ports(host: Host) -> set[int]:
    """Ports sshd listens on in the namespace (from `ss -tlnp`)."""
    proc = host.run(["ss", "-Htlnp"], check=False)
    ports = set()
    for line in proc.stdout.splitlines():
        if '"sshd"' in line:
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def sessions(host: Host, ports: set[int], env: dict[str, str]) -> list[tuple[str, str, str, int]]:
    """(who, client, server address, port) of the SSH sessions to keep."""
    out = []
    conn = env.get("SSH_CONNECTION", "").split()
    if len(conn) == 4:
        out.append(("this ssh session", conn[0], conn[2], int(conn[3])))
    elif len(env.get("SSH_CLIENT", "").split()) == 3:
        client, _, port = env["SSH_CLIENT"].split()
        out.append(("this ssh session", client, "", int(port)))
    proc = host.run(["ss", "-Htn", "state", "established"], check=False)
    for line in proc.stdout.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        local, peer = words[-2], words[-1]
        laddr, lport = local.rsplit(":", 1)
        if int(lport) in ports:
            out.append(("ssh client (ss)", _strip(peer.rsplit(":", 1)[0]), _strip(laddr), int(lport)))
    return out


def _route_dev(host: Host, addr: str) -> str | None:
    proc = host.run(["ip", "route", "get", addr], check=False)
    m = re.search(r" dev (\S+)", proc.stdout)
    return m.group(1) if m and m.group(1) != "lo" else None


def _local(host: Host, family: Family) -> str:
    proc = host.run(["ip", f"-{int(family)}", "-o", "addr", "show", "scope", "global"], check=False)
    m = re.search(r" inet6? (\S+)/", proc.stdout)
    return m.group(1) if m else ("192.0.2.1" if family is Family.IPV4 else "2001:db8::1")


def _samples(member: str) -> list[str]:
    net = ipaddress.ip_network(member, strict=False)
    if net.num_addresses == 1:
        return [str(net.network_address)]
    n = net.num_addresses
    picks = {0, n - 1} | {n * k // (SAMPLES_INSIDE + 1) for k in range(1, SAMPLES_INSIDE + 1)}
    return [str(net.network_address + i) for i in sorted(picks)]


def admin_members(c: CompiledPolicy) -> list[tuple[str, str]]:
    """(group, member) for every member of the policy's admin groups, from the compiled sets."""
    out = []
    for g in c.policy.admin:
        for family, rs in c.rulesets.items():
            for kind in ("ip", "net"):
                s = rs.sets.get(f"stk-{g}-{kind}{int(family)}")
                out += [(g, m) for m in (s.members if s else [])]
    return out


def probes(c: CompiledPolicy, host: Host, env: dict[str, str] | None = None) -> list[AccessProbe]:
    env = dict(os.environ) if env is None else env
    ports = sshd_ports(host)
    found = sessions(host, ports, env)
    ports = ports or {p for *_, p in found} or {DEFAULT_PORT}
    iface = c.policy.server.interfaces[0]
    out = []
    for who, client, server, port in found:
        fam = Family(ipaddress.ip_address(client).version)
        dst = server or _local(host, fam)
        dev = _route_dev(host, client) or iface
        out += [AccessProbe(who, client, dst, port, dev, False), AccessProbe(who, client, dst, port, dev, True)]
    for g, member in admin_members(c):
        for src in _samples(member):
            fam = Family(ipaddress.ip_address(src).version)
            for port in sorted(ports):
                out.append(AccessProbe(f"admin group {g}", src, _local(host, fam), port, _route_dev(host, src) or iface,
                                 False))
    return out


def judge(c: CompiledPolicy, probe: AccessProbe) -> AccessProbe:
    src = ipaddress.ip_address(probe.src)
    rs = c.rulesets[Family(src.version)]
    pkt = Packet(family=Family(src.version), proto=6, src=int(src), dst=int(ipaddress.ip_address(probe.dst)),
                 sport=50022, dport=probe.port, tcp_flags=0x10 if probe.established else 0x02, iif=probe.iif,
                 state="ESTABLISHED" if probe.established else None)
    res = Simulator(rs).run(pkt)
    return AccessProbe(**{**probe.__dict__, "verdict": res.verdict})


def lockouts(c: CompiledPolicy, host: Host,
             env: dict[str, str] | None = None) -> tuple[list[AccessProbe], list[AccessProbe]]:
    """(all judged probes, those that would not get through)."""
    judged = [judge(c, p) for p in probes(c, host, env)]
    return judged, [p for p in judged if p.verdict != "ACCEPT"]
