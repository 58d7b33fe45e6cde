"""NFLOG without a kernel: the nfnetlink_log messages stockade sends and reads, built here byte by byte
with struct from the layouts of linux/netfilter/nfnetlink_log.h, including truncated and garbage ones;
an NFLOG policy's prefixes and groups; the report of NFLOG packets; and the CLI's refusals."""
from __future__ import annotations

import ipaddress
import random
import socket
import struct
import subprocess
import sys
from collections import Counter

import pytest

from stockade.kernel.host import Host, KernelError
from stockade.kernel.logs import read_packets, stockade_prefixes
from stockade.kernel.nflog import Listener, attributes, config_message, headers, messages, packet
from stockade.policy.compile import compile_policy

PACKET_TYPE = (4 << 8) | 0  # NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET


def nla(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def nlmsg(kind: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body + b"\0" * (-len(body) % 4)


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, ttl: int = 64) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 29200, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(tcp), 4242, 0x4000, ttl, 6, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return ip + tcp


def ipv6(src: str, dst: str, nxt: int, rest: bytes, hops: int = 63) -> bytes:
    return struct.pack("!IHBB16s16s", (6 << 28) | (0x12 << 20) | 0xABCDE, len(rest), nxt, hops,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + rest


def log_message(prefix: bytes, payload: bytes, family: int = socket.AF_INET, indev: int | None = 2,
                outdev: int | None = None, stamp: tuple[int, int] | None = (1_796_650_000, 250_000),
                mark: int = 0) -> bytes:
    body = struct.pack("!BBH", family, 0, 7)
    body += nla(1, struct.pack("!HBx", 0x0800, 1))  # NFULA_PACKET_HDR: hw_protocol, hook
    if mark:
        body += nla(2, struct.pack("!I", mark))
    if stamp:
        body += nla(3, struct.pack("!QQ", *stamp))
    if indev is not None:
        body += nla(4, struct.pack("!I", indev))
    if outdev is not None:
        body += nla(5, struct.pack("!I", outdev))
    body += nla(9, payload) + nla(10, prefix + b"\0")
    return nlmsg(PACKET_TYPE, body)


NAMES = {2: "in0", 3: "out0"}.get


def name(index: int) -> str:
    return NAMES(index) or f"if{index}"


def test_config_message_is_the_kernels_layout():
    msg = config_message(513, seq=9)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq, pid) == (len(msg), (4 << 8) | 1, 0x1 | 0x4, 9, 0)
    assert msg[16:20] == bytes([0, 0, 2, 1])  # AF_UNSPEC, version 0, res_id 513 big-endian
    attrs = attributes(msg[20:])
    assert attrs[1] == b"\x01"  # NFULNL_CFG_CMD_BIND
    assert attrs[2] == struct.pack("!IB", 256, 2) + b"\0"  # copy_range, NFULNL_COPY_PACKET, pad: 6 bytes
    assert attrs[5] == struct.pack("!I", 1)  # queue threshold
    assert len(msg) % 4 == 0


def test_ipv4_tcp_packet_as_log_fields():
    raw = log_message(b"stockade-drop: L10 ", ipv4_tcp("192.0.2.2", "192.0.2.1", 40000, 8080), mark=0x2a)
    [(kind, payload)] = list(messages(raw))
    assert kind == PACKET_TYPE
    p = packet(payload, name, now=5.0)
    assert p.prefix == "stockade-drop: L10 " and p.when == 1_796_650_000.25
    assert p.fields == {"IN": "in0", "OUT": "", "SRC": "192.0.2.2", "DST": "192.0.2.1", "LEN": "40", "TOS": "0x10",
                        "PREC": "0x00", "TTL": "64", "ID": "4242", "PROTO": "TCP", "SPT": "40000", "DPT": "8080",
                        "WINDOW": "29200", "MARK": "0x2a"}


def test_ipv6_extension_headers_udp_icmp_and_fragments():
    udp = struct.pack("!HHHH", 5353, 53, 8, 0)
    hop = bytes([17, 0]) + b"\0" * 6  # hop-by-hop options, 8 bytes, then UDP
    f = headers(ipv6("2001:db8::2", "2001:db8::1", 0, hop + udp))
    assert (f["SRC"], f["DST"], f["PROTO"], f["SPT"], f["DPT"]) == ("2001:db8::2", "2001:db8::1", "UDP", "5353", "53")
    assert (f["LEN"], f["TC"], f["HOPLIMIT"], f["FLOWLBL"]) == (str(40 + 16), "18", "63", str(0xABCDE))
    icmp6 = headers(ipv6("2001:db8::2", "2001:db8::1", 58, bytes([128, 0, 0, 0])))
    assert (icmp6["PROTO"], icmp6["TYPE"], icmp6["CODE"]) == ("ICMPv6", "128", "0")
    later = bytes([6, 0]) + struct.pack("!HI", 185 << 3, 1)  # a fragment at offset 1480: no ports
    frag = headers(ipv6("2001:db8::2", "2001:db8::1", 44, later + b"\0" * 20))
    assert frag["PROTO"] == "TCP" and "DPT" not in frag and "FRAG" in frag
    first = bytes([6, 0]) + struct.pack("!HI", 1, 1)  # the first fragment (more follow): ports there
    assert headers(ipv6("2001:db8::2", "2001:db8::1", 44, first + ipv4_tcp("0.0.0.0", "0.0.0.0", 1, 22)[20:]))[
        "DPT"] == "22"
    icmp4 = bytearray(ipv4_tcp("192.0.2.2", "192.0.2.1", 0, 0)[:20] + bytes([8, 0, 0, 0]))
    icmp4[9] = 1
    assert (headers(bytes(icmp4))["PROTO"], headers(bytes(icmp4))["TYPE"]) == ("ICMP", "8")
    later4 = bytearray(ipv4_tcp("192.0.2.2", "192.0.2.1", 1, 2))
    later4[6:8] = struct.pack("!H", 0x2000 | 10)  # more fragments, offset 80 bytes
    assert "DPT" not in headers(bytes(later4)) and headers(bytes(later4))["FRAG"] == "10"


def test_several_messages_in_one_datagram_and_done():
    one = log_message(b"a: L1 ", ipv4_tcp("192.0.2.2", "192.0.2.1", 1, 22))
    two = log_message(b"b: L2 ", ipv6("2001:db8::2", "2001:db8::1", 17, struct.pack("!HHHH", 1, 53, 8, 0)),
                      family=socket.AF_INET6, indev=None, outdev=3, stamp=None)
    done = nlmsg(3, struct.pack("=i", 0))
    got = [packet(p, name, now=7.0) for k, p in messages(one + two + done) if k == PACKET_TYPE]
    assert [(p.prefix, p.fields["DPT"], p.fields["IN"], p.fields["OUT"]) for p in got] == [
        ("a: L1 ", "22", "in0", ""), ("b: L2 ", "53", "", "out0")]
    assert got[1].when == 7.0  # no stamp from the kernel: the arrival time


def test_truncated_messages_never_raise():
    raw = log_message(b"stockade-drop: L10 ", ipv4_tcp("192.0.2.2", "192.0.2.1", 40000, 8080))
    full = packet(list(messages(raw))[0][1], name)
    seen = set()
    for n in range(len(raw)):
        for _, payload in messages(raw[:n]):
            seen.add(n)
            packet(payload, name)
    assert not seen  # a cut message is no message: its length says more than there is
    body = raw[16:]
    shorter = [packet(body[:n], name) for n in range(len(body))]  # a cut payload inside a whole message
    assert shorter[0] is None and shorter[-1] is not None
    for p in filter(None, shorter):  # whole attributes only: what is there is right, the rest missing
        assert p.prefix in ("", full.prefix) and all(v == full.fields[k] for k, v in p.fields.items() if v), p
    payload = ipv4_tcp("192.0.2.2", "192.0.2.1", 40000, 8080)
    cuts = [headers(payload[:n]) for n in range(len(payload) + 1)]
    assert cuts[19] == {} and "SPT" not in cuts[23] and cuts[24]["DPT"] == "8080" and "WINDOW" in cuts[-1]


def test_garbage_never_raises():
    rng = random.Random(16)
    good = log_message(b"x: L3 ", ipv6("2001:db8::2", "2001:db8::1", 0, bytes([43, 0]) + b"\0" * 6 +
                                       bytes([6, 1]) + b"\0" * 14 + ipv4_tcp("0.0.0.0", "0.0.0.0", 1, 2)[20:]))
    for _ in range(3000):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.3:
            buf = bytearray(rng.randbytes(rng.randint(0, 200)))
        for _, payload in messages(bytes(buf)):
            p = packet(payload, name)
            assert p is None or isinstance(p.prefix, str) and all(isinstance(v, str) for v in p.fields.values())
    huge = log_message(b"t: L1 ", b"", stamp=(1 << 63, 5_000_000))
    assert packet(list(messages(huge))[0][1], name, now=3.0).when == 3.0  # a stamp past any date is ignored


POLICY = """[server]
interfaces = ["eth0"]
[log]
target = "nflog"
group = 5
[defaults]
closed = "reject"
[[allow]]
service = "ssh"
"""


def test_an_nflog_policy_maps_its_packets_to_lines(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    c = compile_policy(path)
    known = stockade_prefixes(c.rulesets.values())
    assert known["stockade-drop: L7 "].tag == "p.toml:7" and {k.group for k in known.values()} == {5}
    rules = [r for rs in c.rulesets.values() for t in rs.tables.values() for ch in t.chains.values()
             for r in ch.rules if r.target is not None and r.target.name in ("LOG", "NFLOG")]
    assert rules and {r.target.name for r in rules} == {"NFLOG"}
    assert all(any(m.name == "limit" for m in r.matches) for r in rules)  # the policy's rate stays
    raw = b"".join(log_message(p, ipv4_tcp("192.0.2.9", "192.0.2.1", 1000 + i, d))
                   for i, (p, d) in enumerate([(b"stockade-drop: L7 ", 8080), (b"stockade-drop: L7 ", 25),
                                               (b"stockade-drop: Dnull ", 81), (b"ulogd: ", 9)]))
    report = read_packets((packet(p, name) for _, p in messages(raw)), known)
    assert report.lines == Counter({("p.toml:7", "log: closed"): 2, ("p.toml:protect.null", "log: NULL scan"): 1})
    assert report.foreign == Counter({"ulogd:": 1}) and report.ports["tcp/25"] == 1


@pytest.mark.parametrize("text, error", [
    ('target = "nflog"\ngroup = 65536', "less than or equal to 65535"),
    ('target = "nflog"\ngroup = -1', "greater than or equal to 0"),
    ('target = "nflog"\ngroup = "5"', "valid integer"),
    ("group = 5", 'needs target = "nflog"'),
    ('target = "ulog"', "'log' or 'nflog'"),
])
def test_bad_log_settings_are_positioned_errors(tmp_path, text, error):
    path = tmp_path / "p.toml"
    path.write_text(f'[server]\ninterfaces = ["eth0"]\n[log]\n{text}\n')
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "check", str(path)], capture_output=True, text=True)
    assert r.returncode == 1 and error in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f"{path}:" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--group", "65536"], "not in the range"),
    (["--for", "0"], "not in the range"),
    (["--since", "1h"], "--since reads back a saved log"),
    (["--netns", "../x"], "invalid network namespace name"),
    (["--netns", "sk-no-such-namespace-here"], "there is no network namespace named"),
])
def test_cli_refuses_bad_nflog_use(tmp_path, args, message):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "logs", "--source", "nflog", "--policy", str(path),
                        *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_listener_refuses_a_group_out_of_range():
    with pytest.raises(KernelError, match="out of range"):
        Listener(Host(), 65536)


def test_convert_keeps_a_scripts_nflog_group(tmp_path):
    script = tmp_path / "fw.sh"
    script.write_text("#!/bin/sh\niptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n"
                      'iptables -A INPUT -j NFLOG --nflog-group 4 --nflog-prefix "fw-drop: "\niptables -A INPUT -j DROP\n')
    out = tmp_path / "p.toml"
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "convert", str(script), "--to", "policy", "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    known = stockade_prefixes(compile_policy(out).rulesets.values())
    assert known and {k.group for k in known.values()} == {4} and all(p.startswith("fw-drop: ") for p in known)
