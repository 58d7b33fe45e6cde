"""The dump reader's plain-word path (parse/plain.py) makes exactly what RuleParser makes, or leaves the line to it.

Each dump is read twice, once as shipped and once with the plain path switched off, and the two
readings must be equal: every table, chain and rule (origins and counters included) and every
diagnostic. Inputs: every dump of the net-network corpus and of the real-world dump store
($STOCKADE_REALWORLD_DUMPS, see tests/realworld/SOURCES.md), the lines of bench/parse_scale.py, lines
made to sit at the edges of what the plain path takes, and real lines with random words and marks
put in (hypothesis)."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.model import Family
from stockade.parse import save
from stockade.parse.save import read_save
from stockade.render.save import render_save

from .corpus import CORPUS, NET_NETWORK
from .test_fuzz import DUMP_LINES, FUZZ, in_table, soup_word

REALWORLD = Path(os.environ.get("STOCKADE_REALWORLD_DUMPS", CORPUS / "realworld-dumps"))
BENCH = Path(__file__).resolve().parents[1] / "bench"


@contextmanager
def _general_only():
    with mock.patch.object(save, "_plain_rule", lambda *a: None):
        yield


def _same(text: str, file: str = "plain", families=(None, Family.IPV4, Family.IPV6)) -> None:
    for family in families:
        fast = read_save(text, file, family)
        with _general_only():
            slow = read_save(text, file, family)
        assert fast.rulesets == slow.rulesets
        assert fast.diagnostics == slow.diagnostics
        assert fast.kept == slow.kept
        # rendering memoises by identity what the plain path shares (the same AddrMatch for -s and -d)
        assert [render_save(rs, counters=True) for rs in fast.rulesets.values()] == \
            [render_save(rs, counters=True) for rs in slow.rulesets.values()]


def _dumps() -> list[Path]:
    files = [p for p in NET_NETWORK.rglob("*") if p.is_file() and p.name != "info" and "LICENSE" not in p.name]
    files += [p for p in REALWORLD.glob("*") if p.is_file()] if REALWORLD.is_dir() else []
    return sorted(files)


@pytest.mark.skipif(not _dumps(), reason=f"no corpus at {NET_NETWORK} or {REALWORLD}")
def test_every_corpus_dump_reads_the_same():
    read = 0
    for path in _dumps():
        text = path.read_text(errors="replace")
        if save.COUNTERS.search(text) or "-A " in text:
            _same(text, str(path), (None,))  # as the dump's header or content says
            read += 1
    assert read > 20


def test_the_bench_lines_read_the_same_and_take_the_plain_path():
    sys.path.insert(0, str(BENCH))
    from parse_scale import SHAPES, dump

    text = dump(len(SHAPES) * 20)
    _same(text)
    taken: list[bool] = []
    real = save._plain_rule

    def spy(*args):
        got = real(*args)
        taken.append(got is not None)
        return got
    with mock.patch.object(save, "_plain_rule", spy):
        read_save(text, "bench", Family.IPV4)
    assert len(taken) == len(SHAPES) * 20 and all(taken)  # every shape the bench times is read here


EDGES = [
    "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
    "-A INPUT -p tcp --dport 22 -j ACCEPT",  # implicit -m tcp
    "-A INPUT -m tcp --dport 22 -p tcp -j ACCEPT",  # -p after the match
    "-A INPUT -m iprange --src-range 192.0.2.1-192.0.2.9 -p udp -m udp --sport 53 -j ACCEPT",
    "-A INPUT -p tcp -m tcp --dport=22 -j ACCEPT", "-A INPUT -p tcp -m tcp --dpo 22 -j ACCEPT",
    "-A INPUT -ptcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -s192.0.2.1 -j DROP",
    "-A INPUT ! -s 192.0.2.1/32 ! -d 198.51.100.0/24 ! -i eth0 ! -p tcp -j DROP",
    "-A INPUT ! ! -s 192.0.2.1 -j DROP", "-A INPUT -s 192.0.2.1 ! -j DROP", "-A INPUT -j DROP !",
    "-A INPUT ! -m tcp -j DROP", "-A INPUT -s 192.0.2.1,192.0.2.2 -j DROP", "-A INPUT -s 0.0.0.0/0 -j DROP",
    "-A INPUT ! -s 0.0.0.0/0 -j DROP", "-A INPUT -s 2001:db8::1 -j DROP", "-A INPUT -s x.x.x.x -j DROP",
    "-A INPUT -s 192.0.2.1 -s 192.0.2.2 -j DROP", "-A INPUT -s 192.0.2.1 -d 192.0.2.1 -j DROP",
    "-A INPUT ! -s 192.0.2.1 -d 192.0.2.1 -j DROP", "-A INPUT -m comment --comment \"a\"\"b\" -j DROP",
    "-A INPUT -m comment --comment x\"a b\" -j DROP", "-A INPUT -m comment --comment \"\" -j DROP", "-A INPUT -p all -j DROP", "-A INPUT ! -p all -j DROP",
    "-A INPUT -p 0 -j DROP", "-A INPUT -p nosuch -j DROP", "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
    "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT", "-A INPUT -f -j DROP", "-A INPUT ! -f -j DROP",
    "-A OUTPUT -i eth0 -j DROP", "-A INPUT -o eth0 -j DROP", "-A INPUT -i + -j DROP", "-A INPUT ! -i + -j DROP",
    "-A INPUT -i eth0.1234567890123 -j DROP", "-A INPUT -i a/b -j DROP", "-A FORWARD -i eth0 -o eth1 -j ACCEPT",
    "-A INPUT -m state --state NEW -m tcp -p tcp --dport 22 -j ACCEPT",
    "-A INPUT -p tcp -m state --state NEW --dport 22 -j ACCEPT",  # --dport: the implicit tcp's
    "-A INPUT -p tcp -m tcp --dport 22 -m tcp --sport 1 -j ACCEPT", "-A INPUT -p tcp -m tcp ! --dport 22 -j ACCEPT",
    "-A INPUT -p tcp -m tcp ! ! --dport 22 -j ACCEPT", "-A INPUT -p udp -m tcp --dport 22 -j ACCEPT",
    "-A INPUT -m state -j ACCEPT", "-A INPUT -m nosuch --foo 1 -j ACCEPT", "-A INPUT -m tcp -j ACCEPT",
    "-A INPUT -p tcp -m multiport --dports 22,80,8000:8080 -j ACCEPT", "-A INPUT -m multiport --dports 22 -j ACCEPT",
    "-A INPUT -p tcp -m tcp --syn -j ACCEPT", "-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT",
    "-A INPUT -p tcp -m tcp --tcp-flags SYN -j ACCEPT", "-A INPUT -p tcp -m tcp --tcp-option 2 -j ACCEPT",
    "-A INPUT -m comment --comment \"a b\" -j ACCEPT", "-A INPUT -m comment --comment \"a b -j ACCEPT",
    "-A INPUT -m comment --comment \"x\\\"y\" -j ACCEPT", "-A INPUT -m comment --comment -j -j ACCEPT",
    "-A INPUT -m limit --limit 5/min -j LOG --log-prefix \"in: \" --log-level 4",
    "-A INPUT -j LOG --log-prefix x -m limit --limit 1/s", "-A INPUT -j LOG --limit 1/s",
    "-A INPUT -m limit --limit 1/s -j LOG --limit 2/s", "-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
    "-A INPUT -p udp -j REJECT --reject-with tcp-reset", "-A INPUT -j REJECT --reject-with icmp6-no-route",
    "-A INPUT -j REJECT", "-A INPUT -j REJECT --reject-with", "-A INPUT -j DNAT --to-destination 192.0.2.1",
    "-A INPUT -j USER", "-A INPUT -g USER", "-A INPUT -g LOG", "-A INPUT -j INPUT", "-A INPUT -j NOSUCH",
    "-A INPUT -j ACCEPT -s 192.0.2.1", "-A INPUT -j ACCEPT -j DROP", "-A INPUT -j USER --foo",
    "-A USER -j USER", "-A INPUT -j", "-A INPUT -s", "-A INPUT", "-A INPUT -c 1 2 -j ACCEPT", "-A INPUT -4 -j DROP",
    "-A INPUT \u2013s 192.0.2.1 -j DROP", "-A INPUT stray -j DROP", "-A NOSUCH -j DROP",
    "-A INPUT -m mac --mac-source 52:54:00:00:00:01 -j RETURN", "-A OUTPUT -m mac --mac-source 52:54:00:00:00:01",
    "-A INPUT -m mac --mac-source XX:XX:XX:XX:XX:XX -j RETURN",
    "-A INPUT -m set --match-set blocked src -j DROP", "-A INPUT -m set ! --match-set blocked src,dst -j DROP",
    "-A INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT", "-A INPUT -m conntrack --ctstate BOGUS -j ACCEPT",
    "-A INPUT -m state --state NEW -m state --state ESTABLISHED -j ACCEPT",
    "[1:2] -A INPUT -j ACCEPT", "[1:2] -A INPUT -s 192.0.2.1/32 -j ACCEPT", "[1:2]-A INPUT -j ACCEPT",
    "[x:2] -A INPUT -j ACCEPT", "[1:2] -A NOSUCH -j ACCEPT", "[1:2] -I INPUT -j ACCEPT",
    "-A INPUT -j ACCEPT\r", "-A\tINPUT\t-j\tACCEPT", "-A INPUT -j ACCEPT   ", "-AINPUT -j ACCEPT",
    "-A INPUT -m tcp -p tcp --sport 1 -m udp -j ACCEPT", "-A INPUT -p tcp -m recent --set --name x",
    "-A INPUT -m owner --uid-owner 0 -j ACCEPT", "-A OUTPUT -m owner --uid-owner 0 -j ACCEPT",
    "-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT",
    "-A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x -j ACCEPT",
    "-A INPUT -m time --timestart 09:00 --timestop 17:00 -j ACCEPT",
    "-A INPUT -m string --string x --algo bm -j DROP", "-A INPUT -m string --algo bm --string \"a b\" -j DROP",
]


@pytest.mark.parametrize("table", ["filter", "nat", "mangle"])
def test_lines_at_the_edges_read_the_same(table):
    _same(in_table(EDGES, table))
    for line in EDGES:
        _same(in_table([line], table))


def test_zeroing_after_plain_rules_and_loops_read_the_same():
    _same(in_table(["-A INPUT -j ACCEPT", "-Z INPUT", "-A USER -j USER", ":B - [0:0]", "-A USER -j B", "-A B -j USER"]))
    _same("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-Z INPUT\nCOMMIT\n*filter\n-Z INPUT\nCOMMIT\n")


@FUZZ
@given(st.sampled_from(DUMP_LINES), st.lists(soup_word, max_size=6), st.integers(0, 100),
       st.sampled_from(["filter", "nat", "mangle"]))
def test_real_lines_with_random_words_read_the_same(line, extra, at, table):
    words = line.split()
    at %= len(words) + 1
    _same(in_table([" ".join(words[:at] + extra + words[at:])], table))


@FUZZ
@given(st.sampled_from(DUMP_LINES + EDGES), st.integers(0, 10**4), st.sampled_from(["\"", "!", " ! ", "\t", "=", ","]))
def test_real_lines_with_marks_read_the_same(line, at, mark):
    at %= len(line) + 1
    _same(in_table([line[:at] + mark + line[at:]]))
