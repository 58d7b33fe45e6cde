"""Real frames for simulator packets, sent from inside a namespace by a long-lived scapy process.

The parent (`Injector`) starts `python -m stockade.lab.inject IFACE DST_MAC` with
`ip netns exec` in the client namespace and feeds it one JSON line per batch:
`{"id": 7, "send": [{"packet": SPEC, "ident": 123}]}` where SPEC is the packet
JSON of model.packet; the sender answers `{"id": 7, "sent": 1}` (or
`"error"`) once every frame of the batch has left. Frames go out at layer 2, so
spoofed and martian sources, NULL/XMAS flag sets and lone fragments reach the
wire exactly as specified, with correct checksums. `ident` keeps flows apart: it
is the IP identification (fragment id on IPv6) and the ICMP echo id.

A frame is `length` bytes long unless that is too short for its headers: a
header is never truncated (the packet model cannot describe a cut-off header),
and a first fragment always carries the whole transport header.

The sender pins itself to one CPU: frames sent one after another are then queued
on one backlog and processed by the receiving namespace in the order sent.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from typing import Any, Self

from ..child import CWD, python_module
from ..kernel.netns import Closing, Netns
from ..model import Family
from ..model.diagnostics import StockadeError
from ..model.netfilter import ACK, ICMP_ERRORS, ICMPV6_ERRORS, TCP_FLAGS
from ..model.packet import Packet


def packet_spec(pkt: Packet) -> dict[str, Any]:
    """The model.packet JSON spec that rebuilds `pkt` (the fields a frame carries)."""
    spec: dict[str, Any] = {"family": int(pkt.family), "proto": str(pkt.proto), "src": pkt.addr("src"),
                            "dst": pkt.addr("dst"), "length": pkt.length, "ttl": pkt.ttl, "tos": pkt.tos}
    for key in ("sport", "dport", "icmp_type", "icmp_code"):
        if getattr(pkt, key) is not None:
            spec[key] = getattr(pkt, key)
    if pkt.tcp_flags:
        spec["tcp_flags"] = [name for name, bit in TCP_FLAGS.items() if pkt.tcp_flags & bit]
    if pkt.tcp_options:
        spec["tcp_options"] = sorted(pkt.tcp_options)
    if pkt.fragment:
        spec["frag_offset"] = pkt.frag_offset
        spec["more_fragments"] = pkt.more_fragments
    if pkt.dont_fragment:
        spec["dont_fragment"] = True
    return spec


def _mac_for(dst: ipaddress.IPv4Address | ipaddress.IPv6Address, unicast_mac: str) -> str:
    """Multicast and broadcast destinations need their own link-layer address to be taken in."""
    if dst.version == 6 and dst.is_multicast:
        b = dst.packed[-4:]
        return "33:33:" + ":".join(f"{x:02x}" for x in b)
    if dst.version == 4 and dst.is_multicast:
        b = dst.packed
        return f"01:00:5e:{b[1] & 0x7F:02x}:{b[2]:02x}:{b[3]:02x}"
    if dst.version == 4 and int(dst) == 0xFFFFFFFF:
        return "ff:ff:ff:ff:ff:ff"
    return unicast_mac


def _transport(pkt: Packet, ident: int):
    """The transport header (scapy layer) of `pkt`, without padding."""
    from scapy.layers.inet import TCP, UDP
    from scapy.packet import Raw

    if pkt.proto == 6:
        opts = []
        for kind in sorted(pkt.tcp_options):
            opts.append({2: ("MSS", 1460), 3: ("WScale", 7), 4: ("SAckOK", b""), 8: ("Timestamp", (1, 0)),
                         1: ("NOP", None)}.get(kind, (kind, b"")))
        ack = 1 if pkt.tcp_flags & ACK else 0
        return TCP(sport=pkt.sport, dport=pkt.dport, flags=pkt.tcp_flags, seq=1000 + ident, ack=ack,
                   window=8192, options=opts)
    if pkt.proto == 17:
        return UDP(sport=pkt.sport, dport=pkt.dport)
    if pkt.proto in (1, 58):
        return _icmp(pkt, ident)
    if pkt.proto in (132, 33, 136):
        raise ValueError(f"protocol {pkt.proto} is not supported by the injector")
    return Raw(b"")


def _icmp(pkt: Packet, ident: int):
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    src, dst = pkt.addr("src"), pkt.addr("dst")
    code = pkt.icmp_code or 0
    # An error quotes a datagram the receiver supposedly sent to us: its header and 8 bytes.
    if pkt.family is Family.IPV4:
        if pkt.icmp_type in ICMP_ERRORS:
            inner = bytes(IP(src=dst, dst=src, id=ident & 0xFFFF) / UDP(sport=30000 + ident % 30000, dport=53))
            return ICMP(type=pkt.icmp_type, code=code) / Raw(inner)
        return ICMP(type=pkt.icmp_type, code=code, id=ident & 0xFFFF, seq=1)
    from scapy.layers.inet6 import ICMPv6Unknown
    if pkt.icmp_type in ICMPV6_ERRORS:
        inner = bytes(IPv6(src=dst, dst=src) / UDP(sport=30000 + ident % 30000, dport=53))
        return ICMPv6Unknown(type=pkt.icmp_type, code=code) / Raw(b"\0\0\0\0" + inner)
    if pkt.icmp_type in (128, 129):  # echo: identifier and sequence
        body = (ident & 0xFFFF).to_bytes(2, "big") + b"\0\1"
    elif pkt.icmp_type in (135, 136, 137):  # neighbour discovery: reserved word, target address
        target = ipaddress.IPv6Address(dst)
        if target.is_multicast:  # solicited-node group: the target shares its last 24 bits
            target = ipaddress.IPv6Address(int(ipaddress.IPv6Address("fe80::")) | (int(target) & 0xFFFFFF))
        body = b"\0" * 4 + target.packed
    else:
        body = b"\0" * 4
    return ICMPv6Unknown(type=pkt.icmp_type, code=code) / Raw(body)


def frame(pkt: Packet, ident: int, dst_mac: str, src_mac: str | None = None) -> bytes:
    """The Ethernet frame that carries `pkt` exactly: addresses, flags, fragment fields, length."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    src, dst = pkt.addr("src"), pkt.addr("dst")
    v4 = pkt.family is Family.IPV4
    ip = (IP(src=src, dst=dst, proto=pkt.proto, ttl=pkt.ttl, tos=pkt.tos, id=ident & 0xFFFF,
             flags=2 if pkt.dont_fragment else 0) if v4 else
          IPv6(src=src, dst=dst, nh=pkt.proto, hlim=pkt.ttl, tc=pkt.tos))
    base = 20 if v4 else 40
    hdr = base + (8 if pkt.fragment and not v4 else 0)
    l4 = _transport(pkt, ident)
    # Serialise the transport part under its real pseudo-header, so every checksum is right;
    # pad it with zeros to the packet's length.
    data = bytes(ip / l4)[base:]
    natural = len(data)
    if natural < pkt.length - hdr:
        data = bytes(ip / (l4 / Raw(b"\0" * (pkt.length - hdr - natural))))[base:]
    if pkt.fragment:  # this piece of the datagram: `room` bytes from the offset on
        room = max(8, pkt.length - hdr)
        if pkt.frag_offset == 0:  # a first fragment carries the whole transport header, as RFC 8200 asks
            room = max(room, natural)
        if pkt.more_fragments:  # every piece but the last is a multiple of 8 bytes
            room = (room + 7) // 8 * 8 if pkt.frag_offset == 0 else room // 8 * 8
        data = data[pkt.frag_offset * 8:][:room].ljust(room, b"\0")
        if v4:
            ip.flags = (1 if pkt.more_fragments else 0) | (2 if pkt.dont_fragment else 0)
            ip.frag = pkt.frag_offset
        else:
            ip.nh = 44
            ip = ip / IPv6ExtHdrFragment(nh=pkt.proto, offset=pkt.frag_offset, m=int(pkt.more_fragments),
                                         id=ident)
    ether = Ether(dst=_mac_for(ipaddress.ip_address(dst), dst_mac))
    if src_mac:
        ether.src = src_mac
    return bytes(ether / ip / Raw(data))


def _serve(iface: str, dst_mac: str) -> int:
    """The sender loop run inside the namespace: JSON lines in, one acknowledgement line out each."""
    import logging

    from scapy.arch.linux import L2Socket

    from ..model.packet import from_json

    logging.getLogger("scapy").setLevel(logging.ERROR)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sock = L2Socket(iface=iface)
    with open(f"/sys/class/net/{iface}/address") as f:
        src_mac = f.read().strip()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req: dict = {}
        try:
            req = json.loads(line)
            frames = [frame(from_json(item["packet"]), int(item.get("ident", 0)), dst_mac, src_mac)
                      for item in req["send"]]
            for raw in frames:
                sock.send(raw)
            reply = {"id": req.get("id"), "sent": len(frames)}
        except Exception as e:  # noqa: BLE001 - report and keep serving; the parent decides what is fatal
            reply = {"id": req.get("id"), "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    sock.close()
    return 0


class InjectError(StockadeError, RuntimeError):
    """The sender refused a packet or died."""


class Injector(Closing):
    """`with Injector(ns, "eth0", server_mac) as inj: inj.send(pkt)`; send returns once the frames left."""

    def __init__(self, ns: Netns, iface: str, dst_mac: str):
        self.ns, self.iface, self.dst_mac = ns, iface, dst_mac
        self.proc: subprocess.Popen | None = None
        self._id = 0
        self._ident = 0

    def __enter__(self) -> Self:
        self.proc = self.ns.spawn(python_module("stockade.lab.inject", self.iface, self.dst_mac),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=CWD)
        with self.opening():
            self._read()
        return self

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise InjectError(f"the sender exited (status {self.proc.poll()})")
        return json.loads(line)

    def next_ident(self) -> int:
        self._ident = self._ident % 0xFFFE + 1
        return self._ident

    def send(self, *pkts: Packet) -> list[int]:
        """Send the packets in order, each with a fresh ident; return the idents used."""
        if self.proc is None:
            raise InjectError("the injector is not running")
        self._id += 1
        idents = [self.next_ident() for _ in pkts]
        req = {"id": self._id, "send": [{"packet": packet_spec(p), "ident": i} for p, i in zip(pkts, idents)]}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply or reply.get("id") != self._id:
            raise InjectError(f"sending {req['send']} failed: {reply.get('error', reply)}")
        return idents


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2]))
