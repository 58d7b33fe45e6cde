"""A client and a server joined by a veth pair, optionally a far host behind the server.

    client eth0 ─── in0 server out0 ─── eth0 far        (far only with forward=True)

All addresses are documentation ranges: the client link is 192.0.2.0/24 and
2001:db8::/64, the far link 198.51.100.0/24 and 2001:db8:1::/64, and every
address of 203.0.113.0/24 and 2001:db8:2::/64 is the server's own (an AnyIP
`local` route on lo), so a test can aim packets at many local destinations.

The server accepts whatever source a client spoofs (rp_filter off, accept_local
on), so a packet reaches INPUT unless the kernel itself refuses it (martians).
IPv6 duplicate address detection is off so addresses work at once. With
quiet=True the client and far host carry no addresses and no IPv6 at all: they
never send a packet by themselves (no neighbour discovery, MLD, router
solicitations or replies), so every packet the server sees was sent on purpose.
Every sysctl is set inside these namespaces, never in the machine's own.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Self

from ..kernel.netns import Closing, Netns

CLIENT_IF, SERVER_IN, SERVER_OUT, FAR_IF = "eth0", "in0", "out0", "eth0"

SERVER_V4, CLIENT_V4, CLIENT_NET_V4 = "192.0.2.1", "192.0.2.2", "192.0.2.0/24"
SERVER_V6, CLIENT_V6, CLIENT_NET_V6 = "2001:db8::1", "2001:db8::2", "2001:db8::/64"
FAR_GW_V4, FAR_V4, FAR_NET_V4 = "198.51.100.1", "198.51.100.2", "198.51.100.0/24"
FAR_GW_V6, FAR_V6, FAR_NET_V6 = "2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::/64"
LOCAL_NET_V4, LOCAL_NET_V6 = "203.0.113.0/24", "2001:db8:2::/64"  # all of it is the server's


def _sysctls(ns: Netns, settings: Sequence[tuple[str, str]]) -> None:
    ns.run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings)])


class Topology(Closing):
    """`with Topology(forward=True) as t:` t.client, t.server, t.far are open Netns.

    Everything (namespaces, links, processes inside) is removed when the block
    ends, on every exit path, even if setting up failed half-way.
    """

    def __init__(self, forward: bool = False, quiet: bool = False):
        self.forward = forward
        self.quiet = quiet
        self.client: Netns | None = None
        self.server: Netns | None = None
        self.far: Netns | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        with self.opening():
            self.server = self._stack.enter_context(Netns())
            self.client = self._stack.enter_context(Netns())
            if self.forward:
                self.far = self._stack.enter_context(Netns())
            self._server()
            self._link(self.client, SERVER_IN, CLIENT_IF)
            self._peer(self.client, CLIENT_IF, CLIENT_V4, CLIENT_NET_V4, CLIENT_V6, SERVER_V4, SERVER_V6)
            self._server_if(SERVER_IN, SERVER_V4, CLIENT_NET_V4, SERVER_V6, CLIENT_NET_V6)
            if self.far is not None:
                self._link(self.far, SERVER_OUT, FAR_IF)
                self._peer(self.far, FAR_IF, FAR_V4, FAR_NET_V4, FAR_V6, FAR_GW_V4, FAR_GW_V6)
                self._server_if(SERVER_OUT, FAR_GW_V4, FAR_NET_V4, FAR_GW_V6, FAR_NET_V6)
            self._wait_up()
        return self

    def close(self) -> None:
        self._stack.close()

    @property
    def server_mac(self) -> str:
        """The MAC address frames from the client must carry to reach the server."""
        return self.server.link_mac(SERVER_IN)

    def _wait_up(self, timeout: float = 5.0) -> None:
        """Carrier comes up asynchronously (linkwatch); wait so the first packet is not lost."""
        links = [(self.server, SERVER_IN), (self.client, CLIENT_IF)]
        if self.far is not None:
            links += [(self.server, SERVER_OUT), (self.far, FAR_IF)]
        deadline = time.monotonic() + timeout
        for ns, ifname in links:
            ns.wait_up(ifname, deadline)

    def _server(self) -> None:
        s = self.server
        # `default` first, so the links created below inherit it.
        _sysctls(s, [("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"),
                     ("net.ipv4.conf.all.accept_local", "1"), ("net.ipv4.conf.default.accept_local", "1"),
                     ("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"),
                     ("net.ipv6.conf.all.accept_ra", "0"), ("net.ipv6.conf.default.accept_ra", "0"),
                     ("net.ipv4.ip_forward", "1" if self.forward else "0"),
                     ("net.ipv6.conf.all.forwarding", "1" if self.forward else "0")])
        s.run(["ip", "route", "add", "local", LOCAL_NET_V4, "dev", "lo"])
        s.run(["ip", "-6", "route", "add", "local", LOCAL_NET_V6, "dev", "lo"])

    def _link(self, peer_ns: Netns, server_if: str, peer_if: str) -> None:
        """A veth pair created from inside the server namespace, one end moved straight to the peer."""
        if self.quiet:  # new links in the peer get no IPv6 at all
            _sysctls(peer_ns, [("net.ipv6.conf.default.disable_ipv6", "1")])
        else:
            _sysctls(peer_ns, [("net.ipv6.conf.default.accept_dad", "0"),
                               ("net.ipv6.conf.default.accept_ra", "0")])
        self.server.run(["ip", "link", "add", server_if, "type", "veth", "peer", "name", peer_if,
                         "netns", peer_ns.name])

    def _server_if(self, ifname: str, v4: str, net4: str, v6: str, net6: str) -> None:
        s = self.server
        _sysctls(s, [(f"net.ipv4.conf.{ifname}.rp_filter", "0"), (f"net.ipv4.conf.{ifname}.accept_local", "1"),
                     (f"net.ipv6.conf.{ifname}.accept_dad", "0")])
        s.run(["ip", "addr", "add", f"{v4}/{net4.split('/')[1]}", "dev", ifname])
        s.run(["ip", "-6", "addr", "add", f"{v6}/{net6.split('/')[1]}", "dev", ifname, "nodad"])
        s.run(["ip", "link", "set", ifname, "up"])

    def _peer(self, ns: Netns, ifname: str, v4: str, net4: str, v6: str, gw4: str, gw6: str) -> None:
        if not self.quiet:
            ns.run(["ip", "addr", "add", f"{v4}/{net4.split('/')[1]}", "dev", ifname])
            ns.run(["ip", "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad"])
        ns.run(["ip", "link", "set", ifname, "up"])
        if not self.quiet:
            ns.run(["ip", "route", "add", "default", "via", gw4])
            ns.run(["ip", "-6", "route", "add", "default", "via", gw6])
