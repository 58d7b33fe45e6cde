"""Value parsers and printers shared by extensions: numbers, ports, protocols, quoting.

Each parser raises ParseError with a message that names the bad value, so the
rule parser can point at it.
"""
from __future__ import annotations

import re
import socket

from ..model.address import c_uint_prefix
from ..model.diagnostics import ParseError
from ..model.netfilter import proto_number


def parse_proto(word: str) -> int:
    number = proto_number(word)
    if number is not None:
        return number
    raise ParseError(f"unknown protocol `{word}`", code="bad-protocol",
                     hint="use a name such as tcp, udp, icmp, icmpv6, or a number 0-255")


def parse_decimal(word: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    """A decimal (or 0x hex) integer in [lo, hi], for the few values iptables reads with atoi/%llu."""
    try:
        value = int(word, 16) if word.lower().startswith("0x") else int(word, 10)
    except ValueError:
        raise ParseError(f"{what} `{word}` is not a number", code="bad-number") from None
    if not lo <= value <= hi or word.startswith(("-", "+")):
        raise ParseError(f"{what} `{word}` is out of range {lo}-{hi}", code="bad-number")
    return value


def parse_uint_range(word: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> tuple[int, int]:
    """`N`, `N:M`, `:M`, `N:` or `:` (open ends default to lo and hi); M must not be below N."""
    first, sep, last = word.partition(":")
    a = parse_c_uint(first, what, lo, hi) if first else lo
    b = (parse_c_uint(last, what, lo, hi) if last else hi) if sep else a
    if a > b:
        raise ParseError(f"{what} range `{word}` is backwards ({a} > {b})",
                         hint=f"write {b}:{a}", code="bad-range")
    return a, b


def parse_port(word: str, proto: str | None = None) -> int:
    """A port number or a service name from /etc/services."""
    if word.isascii() and word.isdigit() and (word[0] != "0" or word == "0") and int(word) <= 65535:
        return int(word)  # the usual spelling, read as c_uint_prefix reads it (a leading 0 is octal)
    if c_uint_prefix(word) is not None or word.startswith("-"):
        return parse_c_uint(word, "port", 0, 65535)
    try:
        return socket.getservbyname(word, proto) if proto else socket.getservbyname(word)
    except OSError:
        raise ParseError(f"invalid port or service name `{word}`",
                         hint="use a number 0-65535 or a name from /etc/services", code="bad-port") from None


def parse_port_range(word: str, proto: str | None = None) -> tuple[int, int]:
    """`P`, `P:Q`, `:Q`, `P:` or `:` as the tcp/udp matches accept them."""
    first, sep, last = word.partition(":")
    a = parse_port(first, proto) if first else 0
    b = (parse_port(last, proto) if last else 65535) if sep else a
    if a > b:
        raise ParseError(f"port range `{word}` is backwards ({a} > {b})", hint=f"write {b}:{a}",
                         code="bad-port")
    return a, b


def format_range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}:{r[1]}"


_PLAIN = re.compile(r"[-_0-9a-zA-Z]+")
_ESCAPED = re.compile(r"([\"\\'])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def save_string(value: str) -> str:
    """Quote a string as xtables_save_string does: bare if plain, else "..." with \\ escapes."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + _ESCAPED.sub(r"\\\1", value) + '"'


def check_printable(value: str, what: str) -> None:
    """Strings written into a ruleset may not carry line breaks or control characters."""
    if bad := _CONTROL.search(value):
        raise ParseError(f"{what} contains control character U+{ord(bad.group()):04X}",
                         hint="line breaks and control characters could split the ruleset; remove them",
                         code="control-character")


def parse_c_uint(word: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    """A whole word read as c_uint_prefix does, in [lo, hi]."""
    got = c_uint_prefix(word)
    if got is None or got[1]:
        raise ParseError(f"{what} `{word}` is not a number", code="bad-number")
    if not lo <= got[0] <= hi:
        raise ParseError(f"{what} `{word}` is out of range {lo}-{hi}", code="bad-number")
    return got[0]
