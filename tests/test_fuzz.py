"""Bad input never crashes the readers: every defect becomes a diagnostic.

Random bytes and text, truncated lines of real dumps, huge lines, unbalanced
quotes and "option soup" built from the real option names all go through
read_save and read_script. Nothing may raise;
whatever was accepted must render, and every diagnostic must point into the
input. Deterministic under CI=true; the whole file runs in well under a minute.
"""
from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.extensions import REGISTRY
from stockade.model import Family
from stockade.model.diagnostics import ParseError
from stockade.parse.command import COMMANDS
from stockade.parse.rule import CORE
from stockade.parse.save import read_save, split_line
from stockade.parse.script import Invocation, read_script
from stockade.render.save import render_save

from .corpus import NET_NETWORK

CI = os.environ.get("CI") == "true"
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=CI,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SAMPLES = ("config_home_user/typical_home_user_iptables-save", "configs_ipv6_server/mailserver",
           "configs_medium-sized-company/iptables-save.iptables_mainfw_31.01.2016",
           "configs_sqrl_shorewall/2015_aug_iptables-save", "config_vsrv/iptables-save.txt")


def _samples() -> list[str]:
    out = []
    for rel in SAMPLES:
        path = NET_NETWORK / rel
        if path.is_file():
            out.append(path.read_text())
    return out or ["*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"]


DUMPS = _samples()
DUMP_LINES = [ln for text in DUMPS for ln in text.splitlines() if ln.startswith("-A ")]


def _option_words() -> list[str]:
    words = set(CORE) | set(COMMANDS)
    for table in (REGISTRY.matches, REGISTRY.targets):
        for exts in table.values():
            for ext in exts:
                for opt in ext.options:
                    words.update((opt.name, *opt.aliases))
    return sorted(words)


OPTIONS = _option_words()
NAMES = sorted(set(REGISTRY.matches) | set(REGISTRY.targets) | {"ACCEPT", "DROP", "RETURN", "nosuch", "LOGX"})
VALUES = ["tcp", "udp", "icmp", "6", "all", "0/0", "10.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "eth0",
          "eth+", "22", "1024:", ":1023", "80,443", "5/min", "NEW,ESTABLISHED", "0x1/0xff", "!", "\"a b\"",
          "'x'", "-", "--", "1-2", "ssh", "INPUT", "FORWARD", "", "\u2013dport", "999999999999", "-1",
          "a" * 300, "\\", "\"", "src,dst", "LOCAL", "ALL", "NONE", "SYN", "echo-request", "1.2.3.4:80"]


def check(text: str, file: str = "fuzz") -> None:
    """The properties every input must keep."""
    nlines = len(text.splitlines())
    for family in (None, Family.IPV4, Family.IPV6):
        b = read_save(text, file, family)
        for d in b.diagnostics:
            assert d.severity in ("error", "warning", "note")
            assert 0 <= d.origin.line <= nlines + 1, d
            str(d)
        for rs in b.rulesets.values():
            render_save(rs, counters=True)
    b = read_script(text, file)
    for d in b.diagnostics:
        str(d)
    for rs in b.rulesets.values():
        render_save(rs)


def in_table(lines: list[str], table: str = "filter") -> str:
    chains = ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:USER - [0:0]\n"
    return f"*{table}\n{chains}" + "\n".join(lines) + "\nCOMMIT\n"


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    check(data.decode("utf-8", errors="replace"))
    check(data.decode("latin-1"))


@FUZZ
@given(st.text(max_size=1000))
def test_random_text(text):
    check(text)
    check(in_table([text]))


@settings(FUZZ, max_examples=40)
@given(st.sampled_from(range(len(DUMPS))), st.integers(0, 10**6), st.integers(0, 10**6))
def test_truncated_dump(which, cut, line_cut):
    text = DUMPS[which]
    check(text[:cut % (len(text) + 1)])
    lines = text.splitlines()
    i = line_cut % len(lines)
    lines[i] = lines[i][:cut % (len(lines[i]) + 1)]
    check("\n".join(lines))


@FUZZ
@given(st.sampled_from(DUMP_LINES), st.integers(0, 10**4), st.sampled_from(["\"", "'", "\\", "!", " ! ", "\t"]))
def test_inserted_quotes_and_marks(line, at, mark):
    at %= len(line) + 1
    check(in_table([line[:at] + mark + line[at:]]))


HUGE = {
    "long-comment": DUMP_LINES[0] + " -m comment --comment " + "x" * 100_000,
    "long-word": "-A INPUT -j " + "A" * 100_000,
    "repeated-option": DUMP_LINES[0] + " --dport 22" * 5_000,
    "many-matches": "-A INPUT " + "-m tcp " * 10_000,
    "many-words": "-A INPUT " + "x " * 50_000,
    "long-quoted": '-A INPUT -m comment --comment "' + "y " * 50_000,
}


@pytest.mark.parametrize("kind", HUGE)
def test_huge_lines(kind):
    check(in_table([HUGE[kind]]))


soup_word = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), st.sampled_from(NAMES),
                      st.text(alphabet="-!/:,.x0123456789abc\"' ", max_size=8))


@FUZZ
@given(st.lists(st.lists(soup_word, max_size=14), min_size=1, max_size=6),
       st.sampled_from(["filter", "nat", "mangle", "raw", "security", "bogus"]),
       st.sampled_from(["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING", "USER", "NOSUCH"]))
def test_option_soup(rules, table, chain):
    lines = []
    for words in rules:
        words = list(words)
        for i, w in enumerate(words):  # give the soup some real structure: `-m NAME`, `-j NAME`
            if w in ("-m", "-j", "-g") and i + 1 < len(words):
                words[i + 1] = NAMES[hash(words[i + 1]) % len(NAMES)]
        lines.append(" ".join(["-A", chain, *words]))
    check(in_table(lines, table))


@FUZZ
@given(st.sampled_from(DUMP_LINES), st.lists(soup_word, max_size=6), st.integers(0, 100))
def test_real_line_plus_soup(line, extra, at):
    words = line.split()
    at %= len(words) + 1
    mixed = " ".join(words[:at] + extra + words[at:])
    check(in_table([mixed]))
    check(f"iptables {mixed}\nip6tables -t nat {mixed}\n")


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("iptables -A INPUT-jACCEPT\"'\\$`;|&(){}<>#\n\t =!*")),
               max_size=400))
def test_script_shell_noise(text):
    check("iptables " + text)
    check("#!/bin/sh\nIPT=/sbin/iptables\n$IPT " + text)


# Bash fragments the script reader interprets; scripts are random sequences of them with random words.
BASH_PARTS = [
    "ips=({w} {w})", "ips+=({w})", 'for ip in "${{ips[@]}}"; do iptables -A INPUT -s $ip -j DROP; done',
    "echo ${{ips[*]}} ${{#ips[@]}} ${{ips[{n}]}} ${{!ips[@]}}", "declare -A m=([{w}]={w})", "x=${{x:-{w}}}",
    "x=${{x//{w}/{w}}}", "x=${{x#{w}}}${{x%{w}}}${{x:{n}:{n}}}${{!x}}", "x=$(( {n} {op} {n} ))", "((x{op}={n}))",
    'case "$1" in {w}) f {w};; {w}|*) iptables -A INPUT -p tcp --dport {n} -j ACCEPT ;; esac',
    "case $x in\n  {w})\n    f\n    ;;\nesac", "f() {{ local a=$1; iptables -A INPUT -i $a -j ACCEPT; }}",
    "function g {{ f {w}; return {n}; }}", "f()\n{{\n  g {w}\n}}", "f {w}", "g", "f $(g)",
    "read a b <<< \"{w} {w}\"", "while read l; do f $l; done <<< \"{w}\"", "cat <<EOF | iptables-restore\n*filter\n-A INPUT -s {w} -j ACCEPT\nCOMMIT\nEOF",
    "if [ \"$1\" = {w} ]; then f; elif [[ $x =~ {w} ]]; then g; else :; fi", "for ((i=0; i<{n}; i++)); do f $i; done",
    "while [ ${{i:-0}} -lt {n} ]; do i=$((i+1)); done", "eval \"$x\"", "bash -c \"$x\"", "source {w}", ". ./{w}",
    "set -- {w} {w}", "shift {n}", "set -e", "exit {n}", "break", "continue", "x={w}{w}; x=$x$x$x",
    "sudo env X={w} command nohup iptables -A INPUT -j {w}", "$x -A INPUT -j ACCEPT", "unset x ips", "readonly x",
    "export {w}={w}", "[ -f {w} ] && f || g", "! test {w} = {w}", "x=`echo {w}`", "{w}",
    "case $x in [{w}]) f;; esac", "x=${{x/[{w}/{w}}}", "for p in $(echo {w} | grep {w} | cut -d{w} -f{n}); do f $p; done",
    "head -n {w} <<< {w}", "echo {w} {w} | xargs -n{n} f", "iptables -S | grep {w} | cut -d' ' -f2- | xargs -rL1 iptables -D", "while read -a a; do f ${{a[{n}]}}; done <<< \"{w} {w}\"",
]
bash_word = st.one_of(st.sampled_from(["a", "eth0", "192.0.2.1", "*", "x", "$x", '"$@"', "${x}", "'q r'", "-1", "",
                                       "\\", "$(", "}", "{", '"', "ips[1]", "0x1f", "9" * 30]),
                      st.text(alphabet="ab01$-_.*/:[]{}()'\"\\ ", max_size=6))


@st.composite
def bash_scripts(draw) -> str:
    lines = []
    for part in draw(st.lists(st.sampled_from(BASH_PARTS), min_size=1, max_size=12)):
        lines.append(part.format(w=draw(bash_word), n=draw(st.integers(-3, 40)),
                                 op=draw(st.sampled_from(["+", "-", "*", "/", "%", "<<", "**", "&&", "?"]))))
    return "\n".join(lines) + "\n"


@FUZZ
@given(bash_scripts(), st.lists(bash_word, max_size=3))
def test_bash_constructs_never_crash(text, args):
    for head in ("#!/bin/bash\n", ""):
        b = read_script(head + text, "fuzz.sh", how=Invocation(args=args, env={"x": "a b"}))
        for d in b.diagnostics:
            assert d.origin.line >= 1, d
            str(d)
        for rs in b.rulesets.values():
            render_save(rs)


def test_soup_uses_real_options():
    """The soup is made of the real option names of every registered extension."""
    assert {"--dport", "--comment", "-s", "-A"} <= set(OPTIONS)
    assert all(re.match(r"^-", w) for w in OPTIONS)


@pytest.mark.parametrize(("line", "words"), [
    ('-j LOG --log-prefix "drop: "', [("-j", 1), ("LOG", 4), ("--log-prefix", 8), ("drop: ", 21)]),
    ('a"b c"d  ""', [("ab cd", 1), ("", 10)]),  # quoted parts join the runs they touch; "" is an empty word
    ('"a\\\\\\"b\\\'c\\x" \\\\', [("a\\\"b'c\\x", 1), ("\\\\", 15)]),  # escapes only in quotes, \x stays
    ("\u00a0a\u2003b\t c", [("a", 2), ("b", 4), ("c", 7)]),  # any Unicode white space separates
    ('x y"z w', ("yz w", 3)),  # the unclosed quote's word starts at y and runs to the end of the line
    ('x "z w\\"', ('z w"', 3)),  # an escaped quote does not close
])
def test_split_line_words_and_unclosed_quotes(line, words):
    """Words and columns as iptables-restore splits a line; an unclosed quote is an error at its word."""
    if isinstance(words, tuple):
        with pytest.raises(ParseError) as e:
            split_line(line, "f", 1)
        assert (e.value.code, e.value.token.text, e.value.token.origin.col) == ("unbalanced-quote", *words)
    else:
        assert [(t.text, t.origin.col) for t in split_line(line, "f", 1)] == words


def test_split_line_is_linear_on_an_unclosed_quote_after_long_white_space():
    t = time.process_time()
    with pytest.raises(ParseError):
        split_line("-A INPUT" + " " * 200_000 + '"x', "f", 1)
    assert time.process_time() - t < 1.0
