"""NFLOG: the packets the kernel copies to an nfnetlink_log group (`-j NFLOG`, nft `log group N`), read as the
LOG target's fields, so that kernel/logs.py reports them as it reports kernel log lines.

Each network namespace has its own groups, so the socket is opened by a child run inside the namespace
(`ip netns exec NAME python -m stockade.kernel.nflog GROUP`). The child binds the group (NETLINK_NETFILTER,
NFULNL_MSG_CONFIG: BIND, copy-packet mode, a queue threshold of 1 so each packet comes at once) and writes
one JSON line per NFULNL_MSG_PACKET on stdout: the prefix, the time (the packet's stamp where the kernel
sends one, else when it arrived) and the fields LOG would print (IN, OUT, SRC, DST, LEN, TTL/HOPLIMIT,
PROTO, SPT, DPT, TYPE, CODE, ...), read from the copied IPv4/IPv6 and TCP/UDP/ICMP headers. The parent
stops it by closing its stdin. The parsers never raise on what the socket hands them: a truncated or
garbage message ends where it stops making sense.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..child import CWD, python_module
from .host import Host, KernelError
from .state import check_netns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_QTHRESH = 1, 2, 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
(NFULA_PACKET_HDR, NFULA_MARK, NFULA_TIMESTAMP, NFULA_IFINDEX_INDEV,
 NFULA_IFINDEX_OUTDEV) = 1, 2, 3, 4, 5
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
COPY_RANGE = 256  # bytes of each packet: an IPv6 header, extension headers and the TCP header fit
GROUP_MAX = 65535
STAMP_MAX = 1 << 34  # seconds (the year 2514): a later stamp is garbage, and the arrival time is used
PROTOCOLS = {6: "TCP", 17: "UDP", 136: "UDPLITE", 1: "ICMP", 58: "ICMPv6", 132: "SCTP"}
IPV6_EXTENSIONS = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH (the fragment header apart)


@dataclass(frozen=True)
class Packet:
    """One NFLOG message: the rule's prefix, the time, and the fields LOG prints for the packet."""

    when: float | None
    prefix: str
    fields: dict[str, str]


def _nla(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def config_message(group: int, seq: int = 1, copy_range: int = COPY_RANGE) -> bytes:
    """NFULNL_MSG_CONFIG binding `group` in copy-packet mode, each packet sent at once, an ack asked for."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group)  # nfgenmsg: family, version, res_id (the group)
    body += _nla(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND))
    body += _nla(NFULA_CFG_MODE, struct.pack("!IBx", copy_range, NFULNL_COPY_PACKET))
    body += _nla(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def messages(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram, stopping at the first bad length."""
    at = 0
    while at + 16 <= len(buf):
        length, kind = struct.unpack_from("=IH", buf, at)
        if length < 16 or at + length > len(buf):
            return
        yield kind, buf[at + 16:at + length]
        at += (length + 3) & ~3


def attributes(buf: bytes) -> dict[int, bytes]:
    """Netlink attributes by type (the last of a type kept), stopping at the first bad length."""
    out, at = {}, 0
    while at + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, at)
        if length < 4 or at + length > len(buf):
            break
        out[kind & NLA_TYPE_MASK] = buf[at + 4:at + length]
        at += (length + 3) & ~3
    return out


def ack_error(payload: bytes) -> int | None:
    """The errno of an NLMSG_ERROR (0: an ack), None if the message is too short to say."""
    return -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else None


def packet(payload: bytes, ifname: Callable[[int], str] = str, now: float | None = None) -> Packet | None:
    """An NFULNL_MSG_PACKET's payload (nfgenmsg, then attributes) as a Packet; None if it has no
    attributes at all. `ifname` names an interface index (in the namespace the packet was logged in)."""
    if len(payload) < 4:
        return None
    family = payload[0]
    attrs = attributes(payload[4:])
    if not attrs:
        return None
    raw = attrs.get(NFULA_PREFIX, b"")
    prefix = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    when = now
    stamp = attrs.get(NFULA_TIMESTAMP, b"")
    if len(stamp) >= 16:
        sec, usec = struct.unpack_from("!QQ", stamp)
        if sec < STAMP_MAX and usec < 1_000_000:
            when = sec + usec / 1e6
    fields = {}
    for key, attr in (("IN", NFULA_IFINDEX_INDEV), ("OUT", NFULA_IFINDEX_OUTDEV)):
        index = attrs.get(attr, b"")
        fields[key] = ifname(struct.unpack("!I", index[:4])[0]) if len(index) >= 4 else ""
    fields.update(headers(attrs.get(NFULA_PAYLOAD, b""), family))
    mark = attrs.get(NFULA_MARK, b"")
    if len(mark) >= 4 and (value := struct.unpack("!I", mark[:4])[0]):
        fields["MARK"] = f"0x{value:x}"
    return Packet(when, prefix, fields)


def headers(data: bytes, family: int = socket.AF_UNSPEC) -> dict[str, str]:
    """The fields LOG prints for a packet's network and transport headers, as far as the bytes go."""
    version = data[0] >> 4 if data else 0
    if version == 4 or (not data and family == socket.AF_INET):
        return _ipv4(data)
    if version == 6 or (not data and family == socket.AF_INET6):
        return _ipv6(data)
    return {}


def _ipv4(data: bytes) -> dict[str, str]:
    if len(data) < 20:
        return {}
    tos, length, ident, frag, ttl, proto = struct.unpack_from("!xBHHHBB", data)
    size = (data[0] & 0xF) * 4
    out = {"SRC": str(ipaddress.IPv4Address(data[12:16])), "DST": str(ipaddress.IPv4Address(data[16:20])),
           "LEN": str(length), "TOS": f"0x{tos & 0x1E:02X}", "PREC": f"0x{tos & 0xE0:02X}", "TTL": str(ttl),
           "ID": str(ident)}
    if frag & 0x1FFF:
        out["FRAG"] = str(frag & 0x1FFF)
    out.update(_transport(proto, data[size:] if size >= 20 and not frag & 0x1FFF else b""))
    return out


def _ipv6(data: bytes) -> dict[str, str]:
    if len(data) < 40:
        return {}
    first, length, proto, hops = struct.unpack_from("!IHBB", data)
    out = {"SRC": str(ipaddress.IPv6Address(data[8:24])), "DST": str(ipaddress.IPv6Address(data[24:40])),
           "LEN": str(length + 40), "TC": str((first >> 20) & 0xFF), "HOPLIMIT": str(hops),
           "FLOWLBL": str(first & 0xFFFFF)}
    at = 40
    while proto in IPV6_EXTENSIONS or proto == 44:
        if at + 8 > len(data):
            return {**out, "PROTO": str(proto)}
        if proto == 44:  # fragment: ports only in the first
            if struct.unpack_from("!H", data, at + 2)[0] & 0xFFF8:
                return {**out, "FRAG": "", "PROTO": PROTOCOLS.get(data[at], str(data[at]))}
            proto, at = data[at], at + 8
            continue
        size = (data[at + 1] + 2) * 4 if proto == 51 else (data[at + 1] + 1) * 8
        proto, at = data[at], at + size
    out.update(_transport(proto, data[at:]))
    return out


def _transport(proto: int, data: bytes) -> dict[str, str]:
    out = {"PROTO": PROTOCOLS.get(proto, str(proto))}
    if proto in (6, 17, 136, 132) and len(data) >= 4:
        sport, dport = struct.unpack_from("!HH", data)
        out.update(SPT=str(sport), DPT=str(dport))
        if proto == 6 and len(data) >= 16:
            out["WINDOW"] = str(struct.unpack_from("!H", data, 14)[0])
    elif proto in (1, 58) and len(data) >= 2:
        out.update(TYPE=str(data[0]), CODE=str(data[1]))
    return out


def _names() -> Callable[[int], str]:
    cache: dict[int, str] = {}

    def name(index: int) -> str:
        if index not in cache:
            try:
                cache[index] = socket.if_indextoname(index)
            except (OSError, OverflowError):
                cache[index] = f"if{index}"  # gone since the packet was logged
        return cache[index]
    return name


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(group: int) -> int:
    """The child: bind `group` in this namespace, write each packet as a JSON line until stdin closes or
    SIGTERM/SIGINT; an error is one `{"error": ...}` line and exit status 2."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.append(1))
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as e:
        _emit({"error": f"cannot open a netfilter netlink socket: {e.strerror or e}",
               "hint": "the kernel needs nfnetlink_log (CONFIG_NETFILTER_NETLINK_LOG)"})
        return 2
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE (root): bursts are not lost
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((0, 0))
        sock.settimeout(5)
        try:
            sock.send(config_message(group))
            code = next((ack_error(p) for k, p in messages(sock.recv(65536)) if k == NLMSG_ERROR), None)
        except OSError as e:
            code = e.errno or errno.EIO
        if code:
            _emit(_bind_error(code, group))
            return 2
        _emit({"ready": group})
        sock.setblocking(False)
        name, lost = _names(), 0
        while not stop:
            try:
                ready = select.select([sock, sys.stdin], [], [], 0.5)[0]
            except InterruptedError:
                continue
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
                break
            if sock not in ready:
                continue
            try:
                buf = sock.recv(1 << 17)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    _emit({"error": f"reading NFLOG group {group} failed: {e.strerror or e}"})
                    return 2
                lost += 1  # the socket's buffer overflowed: the kernel dropped messages
                _emit({"lost": lost})
                continue
            now = time.time()
            for kind, payload in messages(buf):
                if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET and (p := packet(payload, name, now)):
                    _emit({"when": p.when, "prefix": p.prefix, "fields": p.fields})
    return 0


def _net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (12), which binding a group needs."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return os.geteuid() == 0
    caps = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) >> 12 & 1)


def _bind_error(code: int, group: int) -> dict:
    """The kernel says EPERM both without CAP_NET_ADMIN and when another socket holds the group."""
    if code == errno.EBUSY or (code == errno.EPERM and _net_admin()):
        return {"error": f"NFLOG group {group} already has a listener here (ulogd, another stockade logs?)",
                "hint": "stop it, or listen on the group the policy logs to: --group N"}
    if code == errno.EPERM:
        return {"error": f"binding NFLOG group {group} needs CAP_NET_ADMIN", "hint": "run it as root"}
    return {"error": f"the kernel refused NFLOG group {group}: {os.strerror(code)}",
            "hint": "the kernel needs nfnetlink_log (CONFIG_NETFILTER_NETLINK_LOG)"}


class Listener:
    """The packets NFLOG group `group` of `host`'s namespace receives (`packets`); `received` and `lost` (times
    the socket's buffer overflowed and the kernel dropped messages) count as it goes."""

    START = 30.0  # seconds the child has to bind the group

    def __init__(self, host: Host, group: int):
        if not 0 <= group <= GROUP_MAX:
            raise KernelError(f"NFLOG group {group} is out of range", hint=f"a group is 0-{GROUP_MAX}")
        if host.netns is not None:
            check_netns(host.netns)
            if not (Path("/run/netns") / host.netns).exists():
                raise KernelError(f"there is no network namespace named {host.netns}", hint="see `ip netns list`")
            if os.geteuid() != 0:
                raise KernelError(f"listening in namespace {host.netns} needs root", hint="run it as root")
        self.host, self.group, self.received, self.lost = host, group, 0, 0

    def packets(self, seconds: float | None, stopped: Callable[[], bool],
                progress: Callable[[int, float | None], None] | None = None,
                ready: Callable[[], None] | None = None) -> Iterator[Packet]:
        """Until `seconds` pass after the bind (None: no limit) or `stopped()`; `ready()` once the group is
        bound, `progress(packets, seconds left)` as it goes. KernelError when the group cannot be bound."""
        try:
            proc = subprocess.Popen(self.host.argv(python_module("stockade.kernel.nflog", str(self.group))),
                                    cwd=CWD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)  # ^C on the terminal reaches the parent only
        except OSError as e:
            raise KernelError(f"cannot start the NFLOG listener: {e.strerror or e}") from None
        try:
            yield from self._read(proc, seconds, stopped, progress, ready)
        finally:
            _close(proc)

    def _read(self, proc: subprocess.Popen, seconds: float | None, stopped: Callable[[], bool],
              progress: Callable[[int, float | None], None] | None,
              ready: Callable[[], None] | None) -> Iterator[Packet]:
        assert proc.stdout is not None and proc.stdin is not None
        out, buf, deadline, closing = proc.stdout.fileno(), b"", None, False
        start = time.monotonic()
        while True:
            if deadline is None and stopped():
                return
            if deadline is None and time.monotonic() > start + self.START:
                raise KernelError(f"the NFLOG listener in {self.host.label} did not bind group {self.group} "
                                  f"within {self.START:.0f} s")
            if deadline is not None and not closing and (stopped() or time.monotonic() >= deadline):
                proc.stdin.close()  # the child stops and writes what it has; its stdout then ends
                closing = True
            if select.select([out], [], [], 0.25)[0]:
                chunk = os.read(out, 1 << 16)
                if not chunk:
                    break
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    item = json.loads(line)
                    if "error" in item:
                        where = f" (in {self.host.netns})" if self.host.netns else ""
                        raise KernelError(f"{item['error']}{where}", hint=item.get("hint"))
                    if "ready" in item:
                        deadline = time.monotonic() + seconds if seconds is not None else float("inf")
                        if ready is not None:
                            ready()
                    elif "lost" in item:
                        self.lost = item["lost"]
                    elif "prefix" in item:
                        self.received += 1
                        yield Packet(item["when"], item["prefix"], item["fields"])
            if progress is not None and deadline is not None:
                progress(self.received, None if seconds is None else max(0.0, deadline - time.monotonic()))
        if not closing:  # the child ended by itself: before the bind, or killed while listening
            err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
            when = "before it listened" if deadline is None else f"after {self.received} packet(s)"
            raise KernelError(f"the NFLOG listener in {self.host.label} exited {when}: "
                              f"{err[-500:] or f'status {proc.wait()}'}")


def _close(proc: subprocess.Popen) -> None:
    for step in (proc.stdin.close, lambda: proc.wait(timeout=5)):
        try:
            step()
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
