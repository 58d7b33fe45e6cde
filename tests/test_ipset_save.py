"""extensions/ipset.py saved_create / saved_members: a set as `ipset save` (7.17) prints it. Each expected
line is what the real ipset printed for the same commands in a namespace (initval, a random seed, aside)."""
from __future__ import annotations

import pytest

from stockade.extensions.ipset import saved_create, saved_members
from stockade.model.diagnostics import ParseError


@pytest.mark.parametrize("command,kernel", [
    ("a hash:ip hashsize 100 maxelem 10", "a hash:ip family inet hashsize 128 maxelem 10 bucketsize 12"),
    ("b hash:net", "b hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12"),
    ("c bitmap:port range 1024-2048 timeout 60", "c bitmap:port range 1024-2048 timeout 60"),
    ("f hash:ip hashsize 3000 timeout 10 counters comment skbinfo",
     "f hash:ip family inet hashsize 4096 maxelem 65536 timeout 10 counters comment skbinfo bucketsize 12"),
    ("h ipporthash", "h hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12"),
    ("i portmap --from 1 --to 100", "i bitmap:port range 1-100"),
    ("k hash:ip maxelem 200000 hashsize 65536 family inet", "k hash:ip family inet hashsize 65536 maxelem 200000 bucketsize 12"),
    ("b2 hash:ip netmask 24", "b2 hash:ip family inet hashsize 1024 maxelem 65536 netmask 24 bucketsize 12"),
    ("d hash:ip family inet6 timeout 300", "d hash:ip family inet6 hashsize 1024 maxelem 65536 timeout 300 bucketsize 12"),
    ("bi bitmap:ip range 192.0.2.0/24", "bi bitmap:ip range 192.0.2.0-192.0.2.255"),
    ("l nethash --hashsize 2048", "l hash:net family inet hashsize 2048 maxelem 65536 bucketsize 12"),
])
def test_create_as_ipset_save_prints_it(command, kernel):
    name, type_, *words = command.split()
    assert " ".join((name, *saved_create(name, type_, words)[:1], *saved_create(name, type_, words)[1])) == kernel


@pytest.mark.parametrize("create,element,kernel", [
    ("hash:ip", "192.0.2.0/30", ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"]),
    ("hash:ip", "192.0.2.4/32", ["192.0.2.4"]),
    ("hash:net", "198.51.100.7/24", ["198.51.100.0/24"]),
    ("hash:net", "203.0.113.5", ["203.0.113.5"]),
    ("hash:ip netmask 24", "192.0.2.77", ["192.0.2.0"]),
    ("hash:net,port", "192.0.2.0/24,udp:53", ["192.0.2.0/24,udp:53"]),
    ("hash:net,port", "192.0.2.9,http", ["192.0.2.9,tcp:80"]),
    ("hash:ip,port", "192.0.2.2,80", ["192.0.2.2,tcp:80"]),
    ("hash:ip,port,ip", "192.0.2.1,80,198.51.100.1", ["192.0.2.1,tcp:80,198.51.100.1"]),
    ("bitmap:port range 0-65535", "22", ["22"]),
    ("bitmap:ip range 192.0.2.0/24", "192.0.2.0/30", ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"]),
    ("hash:ip family inet6", "2001:db8::1", ["2001:db8::1"]),
])
def test_members_as_ipset_save_prints_them(create, element, kernel):
    type_, *words = create.split()
    assert sorted(saved_members(type_, saved_create("s", type_, words)[1], element)) == kernel


@pytest.mark.parametrize("create,element", [("hash:ip", "192.0.2.1,80"), ("hash:ip", "2001:db8::1"),
                                            ("hash:net", "not-an-address"), ("hash:ip", "0.0.0.0/0")])
def test_elements_ipset_refuses_are_errors(create, element):
    with pytest.raises(ParseError):
        saved_members(create, saved_create("s", create, [])[1], element)


@pytest.mark.parametrize("words", [["nosuch:type"], ["hash:ip", "family", "ipx"], ["hash:ip", "bogus"],
                                   ["bitmap:port"], ["hash:ip", "hashsize", "x"]])
def test_creates_ipset_refuses_are_errors(words):
    with pytest.raises(ParseError):
        saved_create("s", words[0], words[1:])
