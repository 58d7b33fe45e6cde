"""The lab's network: a server, and the hosts that probe it, on one switched segment.

    admin  eth0 ─┐
    internet eth0 ─┤ br0 (switch) ├─ eth0 server
    peer   eth0 ─┘

Every host is a throwaway namespace (kernel.netns); the switch is a bridge in a namespace of
its own, so the server's interface is a plain veth named `eth0`, as the policy names it, and
bridge netfilter (br_netfilter) never sees a frame in the server's namespace. A host holds
the source addresses it was given (documentation addresses only, /32 and /128) and reaches
everything on-link; the server holds its own addresses and routes every destination on-link
too, so it can answer a spoofed source as well as a real one. Sysctls are set inside the
namespaces only: the server takes any source (rp_filter off), answers without ICMP rate
limits, and retransmits no SYN/ACK (a probe's half-open connection leaves no late packets);
hosts pick real connections' source ports above the probes' range (lab.probes.SPORTS).
"""
from __future__ import annotations

import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Self

from ..kernel.netns import Closing, Netns

IFACE = "eth0"
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
EPHEMERAL = "50000 60999"  # real connections' source ports, clear of the probes' 40000-49999


def documentation(addr: str) -> bool:
    a = ipaddress.ip_address(addr)
    return any(a in n for n in DOC_NETS)


@dataclass
class LabHost:
    role: str  # "admin", "internet", "peer"
    addresses: list[str] = field(default_factory=list)
    ns: Netns | None = None


class Lab(Closing):
    """`with Lab(server_addrs, {"admin": [...], ...}) as lab:` lab.server, lab.hosts[role].ns are open."""

    def __init__(self, server_addresses: list[str], hosts: dict[str, list[str]]):
        for a in [*server_addresses, *(x for xs in hosts.values() for x in xs)]:
            if not documentation(a):
                raise ValueError(f"{a} is not a documentation address; the lab uses no others for hosts")
        self.server_addresses = server_addresses
        self.hosts = {role: LabHost(role, list(addrs)) for role, addrs in hosts.items() if addrs}
        self.server: Netns | None = None
        self.switch: Netns | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        with self.opening():
            self.switch = self._stack.enter_context(Netns())
            self.server = self._stack.enter_context(Netns())
            for h in self.hosts.values():
                h.ns = self._stack.enter_context(Netns())
            sw = self.switch
            sw.run(["ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])
            sw.run(["ip", "link", "set", "br0", "up"])
            self._server()
            for n, h in enumerate(self.hosts.values()):
                self._plug(h.ns, f"p{n}")
                self._host(h)
            self._plug(self.server, "srv", first=False)
            self._wait_up()
        return self

    def close(self) -> None:
        self._stack.close()

    def _plug(self, ns: Netns, port: str, first: bool = True) -> None:
        if first:
            ns.run(["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.default.accept_ra=0"])
        self.switch.run(["ip", "link", "add", port, "type", "veth", "peer", "name", IFACE, "netns", ns.name])
        self.switch.run(["ip", "link", "set", port, "master", "br0", "up"])

    def _server(self) -> None:
        s = self.server
        s.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
               "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.default.accept_ra=0",
               "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000",
               "net.ipv4.icmp_msgs_burst=100000", "net.ipv4.tcp_synack_retries=0", "net.ipv4.ip_forward=0"])

    def _addresses(self, ns: Netns, addrs: list[str]) -> None:
        for a in addrs:
            if ":" in a:
                ns.run(["ip", "-6", "addr", "add", f"{a}/128", "dev", IFACE, "nodad"])
            else:
                ns.run(["ip", "addr", "add", f"{a}/32", "dev", IFACE])
        ns.run(["ip", "link", "set", IFACE, "up"])
        ns.run(["ip", "route", "add", "default", "dev", IFACE])
        ns.run(["ip", "-6", "route", "add", "default", "dev", IFACE])

    def _host(self, h: LabHost) -> None:
        h.ns.run(["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPHEMERAL}"])
        self._addresses(h.ns, h.addresses)

    def _wait_up(self, timeout: float = 5.0) -> None:
        """Carrier comes up asynchronously; the server's interface is plugged last."""
        self._addresses(self.server, self.server_addresses)
        self.server.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{IFACE}.rp_filter=0"])
        deadline = time.monotonic() + timeout
        for ns in [self.server, *(h.ns for h in self.hosts.values())]:
            ns.wait_up(IFACE, deadline)
