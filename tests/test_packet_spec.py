"""Packet specs: the JSON and short forms `stockade explain` reads, with the fields the extensions added."""
from __future__ import annotations

import json

import pytest

from stockade.model.packet import SpecError, from_json, from_short
from tests.simulation import PEERS_V4, udp

# ---- packet spec fields added for these matches ----

def test_spec_fields_and_short_form():
    p = from_short("tcp 192.0.2.2:4000 > 192.0.2.1:80 SYN mac 52:54:00:12:34:56 pkttype broadcast ctmark 0x10 "
                   "uid 1000 gid 100 dsttype local payload GET")
    assert p.src_mac == bytes.fromhex("525400123456") and p.pkttype == "broadcast" and p.ctmark == 16
    assert (p.uid, p.gid, p.dst_type, p.payload) == (1000, 100, "LOCAL", b"GET")
    assert p.length == 20 + 20 + 3  # headers plus payload when no length is given
    q = from_json(udp(src="2001:db8::2", dst="2001:db8::1", payload_hex="0001", frag_offset=2))
    assert q.length == 40 + 8 + 2 and q.payload == b"\0\1"  # a later fragment: IPv6 and fragment header only
    assert from_json(udp(groups=[4, 5], buffer_splits=[20])).groups == frozenset({4, 5})
    for bad in ({"src_mac": "52:54"}, {"pkttype": "bogus"}, {"dst_type": "HOME"}, {"payload": "x", "payload_hex": "00"},
                {"payload": "x", "length": 20}, {"groups": ["a"]}):
        with pytest.raises(SpecError):
            from_json(udp(**bad))
    with pytest.raises(SpecError):  # TCP with options has no fixed header length
        from_json({"proto": "tcp", "dport": 1, "tcp_options": [2], "payload": "x", **PEERS_V4})


def test_link_class_and_arrival_ctmark():
    assert from_json(udp()).link_class == "unicast"
    assert from_json(udp(dst="224.0.0.5")).link_class == "multicast"
    assert from_json(udp(dst="255.255.255.255")).link_class == "broadcast"
    assert from_json(udp(dst="ff02::1", src="2001:db8::2")).link_class == "multicast"
    assert from_json(udp(dst="224.0.0.5", hook="OUTPUT")).link_class == "unicast"
    assert from_json(udp()).arrival_ctmark == 0
    assert from_json(udp(state="ESTABLISHED")).arrival_ctmark is None
    assert from_json(udp(state="ESTABLISHED", ctmark=7)).arrival_ctmark == 7
    assert from_json(udp(iif="lo")).arrival_ctmark is None


@pytest.mark.parametrize("field", ['"tcp_flags": 5', '"tcp_options": 5', '"tcp_options": ["x"]', '"tcp_options": [1e400]',
                                   '"tcp_options": [256]', '"t": "x"', '"t": -1', '"tcp_flags": {"SYN": 1}'])
def test_a_field_of_the_wrong_shape_is_a_spec_error_not_a_traceback(field):
    with pytest.raises(SpecError):
        from_json(json.loads('{"proto": "tcp", "src": "192.0.2.1", "dst": "198.51.100.1", "dport": 22, '
                             + field + "}"))


@pytest.mark.parametrize("dev", [1, True, 1.5, ["eth0"], {"name": "eth0"}])
def test_an_interface_is_named_by_text(dev):
    """A number as `iif` made the compiled `-i eth+` test raise (a traceback); it is the spec's error."""
    for field in ("iif", "oif"):
        with pytest.raises(SpecError, match=f"`{field}` is an interface name"):
            from_json(udp() | {field: dev})


@pytest.mark.parametrize("family", [None, "x", [4], {"v": 4}])
def test_a_family_that_is_no_number_is_the_specs_error(family):
    """int() of these raised out of from_json (a traceback from explain)."""
    with pytest.raises(SpecError, match="`family` is 4 or 6"):
        from_json(udp() | {"family": family})
    assert from_json(udp() | {"family": "4"}).family == 4
