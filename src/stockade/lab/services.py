"""Listeners for the lab's server: every port the ruleset mentions answers, the sampled closed ones do not.

Run inside the server namespace as `python -m stockade.lab.services tcp:22,80 udp:53`; it prints
one `ready` line once every socket listens. TCP sockets echo what they read (so an established
connection can be proven to carry data) and close when the peer does; UDP sockets only receive:
an answer would go to a port the probing host never opened and make it send ICMP errors back,
which the ruleset under test would see. Every socket is dual-stack (`::`, IPV6_V6ONLY off).
"""
from __future__ import annotations

import selectors
import socket
import sys


def _socket(kind: int, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.setblocking(False)
    return s


def parse_ports(args: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"tcp": [], "udp": []}
    for arg in args:
        proto, _, ports = arg.partition(":")
        out[proto] += [int(p) for p in ports.split(",") if p]
    return out


def serve(ports: dict[str, list[int]]) -> None:
    sel = selectors.DefaultSelector()
    for port in ports["tcp"]:
        s = _socket(socket.SOCK_STREAM, port)
        s.listen(128)
        sel.register(s, selectors.EVENT_READ, "listen")
    for port in ports["udp"]:
        sel.register(_socket(socket.SOCK_DGRAM, port), selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if key.data == "listen":
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "udp":
                try:
                    sock.recvfrom(65535)
                except OSError:
                    pass
            else:
                try:
                    data = sock.recv(65535)
                    if data:
                        sock.sendall(data)
                        continue
                except OSError:
                    pass
                sel.unregister(sock)
                sock.close()


if __name__ == "__main__":
    serve(parse_ports(sys.argv[1:]))
