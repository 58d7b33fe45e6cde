"""The value parsers' shortcuts for the usual spellings (a decimal port, a six-field MAC address, a
plain string) give what the general reading gives, errors included, on random words."""
from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.extensions.mac import _FIELD, parse_mac
from stockade.extensions.values import check_printable, parse_c_uint, parse_port, save_string
from stockade.model.address import c_uint_prefix
from stockade.model.diagnostics import ParseError

from .test_fuzz import FUZZ


def _outcome(f, *args):
    try:
        return f(*args)
    except ParseError as e:
        return ("error", e.message, e.code, e.hint)


def _port_general(word: str, proto: str | None) -> int:
    if c_uint_prefix(word) is not None or word.startswith("-"):
        return parse_c_uint(word, "port", 0, 65535)
    try:
        return socket.getservbyname(word, proto) if proto else socket.getservbyname(word)
    except OSError:
        raise ParseError(f"invalid port or service name `{word}`",
                         hint="use a number 0-65535 or a name from /etc/services", code="bad-port") from None


def _mac_general(word: str) -> bytes:
    fields = word.split(":")
    if len(fields) != 6 or not all(_FIELD.fullmatch(f) for f in fields):
        raise ParseError(f"invalid MAC address `{word}`", code="bad-mac",
                         hint="write six hex bytes separated by colons, e.g. 52:54:00:12:34:56")
    return bytes((-int(f[1:], 16) if f.startswith("-") else int(f or "0", 16)) & 0xFF for f in fields)


def _save_string_general(value: str) -> str:
    plain = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if value and set(value) <= plain:
        return value
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in value) + '"'


def _printable_general(value: str, what: str) -> None:
    bad = [c for c in value if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise ParseError(f"{what} contains control character U+{ord(bad[0]):04X}",
                         hint="line breaks and control characters could split the ruleset; remove them",
                         code="control-character")


PORTS = st.one_of(st.integers(0, 99999).map(str), st.text(alphabet="0123456789x+- \u0661\u00b2", max_size=7),
                  st.sampled_from(["ssh", "http", "nosuch", "0", "00", "065535", "65535", "65536", "0x16"]))


@FUZZ
@given(PORTS, st.sampled_from([None, "tcp", "udp"]))
def test_ports_read_as_the_general_reading_reads_them(word, proto):
    assert _outcome(parse_port, word, proto) == _outcome(_port_general, word, proto)


@FUZZ
@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEFxX:+- ", max_size=20),
                 st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":")),
                 st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper())))
def test_mac_addresses_read_as_the_general_reading_reads_them(word):
    assert _outcome(parse_mac, word) == _outcome(_mac_general, word)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab_-09 \"'\\\t\x00\x1f\x7f\u00e9\u0661")), max_size=12))
def test_strings_saved_and_checked_as_the_general_reading_does(value):
    assert save_string(value) == _save_string_general(value)
    assert _outcome(check_printable, value, "comment") == _outcome(_printable_general, value, "comment")


@pytest.mark.parametrize("word", ["22", "0", "65535"])
def test_usual_ports(word):
    assert parse_port(word) == int(word)
