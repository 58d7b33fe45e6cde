"""Hypothesis fuzz of what an admin or an attacker can hand stockade (issue 14, "Must show"): policies,
dumps, packet specs and command-line arguments, each through the command line in-process (click's
runner), as a user meets it. For every case: no traceback (no exception but the command's own exit),
an exit code of 0, 1 or 2, and every `error:` line positioned `file:line:col`. The only errors without
a position are those about a file as a whole (`cannot read ...`, `cannot write`: missing,
unreadable, a directory) and click's usage errors (`Error: ...`, exit 2).

CI runs a few hundred cases per kind (the whole file well under a minute). The full run is 10,000 per
kind: `pytest tests/hostile/test_fuzz_inputs.py --hypothesis-profile=thorough` (or
STOCKADE_FUZZ_EXAMPLES=N). Scripts are fuzzed with the script reader (tests/test_script.py, issue 12).
Only commands that read input and compile into a temporary directory run: nothing here touches
the kernel, and no argument can name a directory outside the test's own to write to.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.cli import main

from ..test_fuzz import DUMP_LINES, OPTIONS, VALUES

CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("STOCKADE_FUZZ_EXAMPLES", "0")) or (
    settings.default.max_examples if settings.default.max_examples >= 1000 else None)
POSITIONED = re.compile(r"\S:\d+:\d+: error: ")
WHOLE_FILE = re.compile(r"^.*: error: cannot (read|write)\b")


def fuzz(ci_examples: int):
    """Settings for one input kind: `ci_examples` cases unless a thorough run asks for more."""
    return settings(max_examples=EXAMPLES or ci_examples, deadline=None, database=None, derandomize=CI,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def work():
    """The fuzz's own directory (also the working directory, so relative paths stay inside it)."""
    old = os.getcwd()
    d = Path(tempfile.mkdtemp(prefix="stockade-fuzz-"))
    os.chdir(d)
    (d / "dump.v4").write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
    (d / "fw.sh").write_text("#!/bin/sh\niptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 80 -j ACCEPT\n")
    (d / "policy.toml").write_text('admin = ["ops"]\n[groups]\nops = ["192.0.2.1"]\n[[allow]]\nservice = "ssh"\n')
    (d / "latin1.v4").write_bytes(b"*filter\n-A INPUT -m comment --comment caf\xe9\nCOMMIT\n")
    (d / "bom.v4").write_text("\ufeff*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    (d / "pk.jsonl").write_bytes(b'tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN\n\xff\n{"proto": 6}\n')
    (d / "ipassmt").write_text("eth0 192.0.2.0/24\n")
    (d / "adir").mkdir()
    try:
        yield d
    finally:
        os.chdir(old)
        shutil.rmtree(d, ignore_errors=True)


def run(args: list[str]):
    """One command, in-process; the properties every run keeps. Returns the result."""
    r = CliRunner().invoke(main, args, catch_exceptions=True)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"stockade {args!r} raised {r.exception!r}") from r.exception
    out = r.stdout + r.stderr
    assert "Traceback" not in out, (args, out)
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, out)
    for line in out.splitlines():
        if ": error: " in line and not WHOLE_FILE.match(line):
            assert POSITIONED.search(line), (args, line)
    return r


# -- policies ----------------------------------------------------------------------------------------

def toml(value) -> str:
    """A value as TOML (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"


ADDRESSES = ["192.0.2.1", "198.51.100.0/24", "2001:db8::/48", "0.0.0.0/0", "::/0", "10.0.0.1/8", "300.1.1.1",
             "192.0.2.1 ", "", "fe80::1%eth0", "2001:db8::", "127.0.0.1"]
WORDS = st.one_of(st.sampled_from(ADDRESSES + ["ssh", "https", "dns", "8080/tcp", "1-65535/udp", "0/tcp", "ftp",
                                               "everyone", "ops", "bogons", "5/second", "10/10m", "0/s", "drop",
                                               "reject", "strict", "open", "allow", "limit", "deny", "eth0", "lo+",
                                               "a" * 40, "we\"ird", "x\ny"]),
                  st.text(max_size=30))
NAMES = st.one_of(st.sampled_from(["ops", "bogons", "everyone", "web-1", "a" * 22, "adm\n", "Ops", "_x"]),
                  st.text(max_size=25))
SCALAR = st.one_of(WORDS, st.integers(-5, 100000), st.booleans())
VALUE = st.one_of(SCALAR, st.lists(WORDS, max_size=4))
SECTIONS = {
    "server": st.fixed_dictionaries({}, optional={"interfaces": st.lists(WORDS, max_size=3),
                                                  "addresses": st.lists(WORDS, max_size=3)}),
    "groups": st.dictionaries(NAMES, st.one_of(st.lists(WORDS, max_size=4), st.just({"file": "members.txt"}),
                                               st.fixed_dictionaries({"file": WORDS})), max_size=3),
    "defaults": st.fixed_dictionaries({}, optional={"closed": WORDS, "egress": WORDS}),
    "log": st.fixed_dictionaries({}, optional={"drops": SCALAR, "prefix": WORDS, "rate": WORDS, "burst": SCALAR}),
    "icmp": st.fixed_dictionaries({}, optional={"ping": WORDS, "ping_out": WORDS, "rate": WORDS}),
    "protect": st.fixed_dictionaries({}, optional=dict.fromkeys(("invalid", "null", "bogons", "syn_flood"), SCALAR)),
    "blocklist": st.fixed_dictionaries({}, optional={"inbound": st.lists(NAMES, max_size=2),
                                                     "outbound": st.lists(NAMES, max_size=2)}),
    "typo": st.dictionaries(NAMES, VALUE, max_size=2),
}
RULES = st.lists(st.fixed_dictionaries({"service": st.one_of(WORDS, st.lists(WORDS, max_size=3))},
                                       optional={"from": st.one_of(NAMES, st.lists(NAMES, max_size=2)),
                                                 "to": st.lists(NAMES, max_size=2), "limit": WORDS,
                                                 "extra": SCALAR}), max_size=3)


@st.composite
def policies(draw) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(f"admin = {toml(draw(st.lists(NAMES, max_size=3)))}")
    for name, strategy in SECTIONS.items():
        if draw(st.booleans()):
            lines.append(f"[{name}]")
            lines += [f"{json.dumps(k)} = {toml(v)}" for k, v in draw(strategy).items()]
    for table in ("allow", "egress"):
        for rule in draw(RULES):
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {toml(v)}" for k, v in rule.items()]
    text = "\n".join(lines) + "\n"
    cut = draw(st.integers(0, len(text)))  # then damage it: a cut, a random insertion, deep nesting
    return draw(st.sampled_from([
        text, text[:cut], text[:cut] + draw(st.text(max_size=20)) + text[cut:],
        text + "x = " + "[" * draw(st.integers(30, 3000)) + "\n", text.replace("=", "", 1)]))


@fuzz(ci_examples=150)
@given(policy=policies(), members=st.lists(WORDS, max_size=6), target=st.sampled_from(["iptables", "nftables"]))
def test_fuzz_policies(work, policy, members, target):
    (work / "members.txt").write_text("\n".join(members) + "\n")
    p = work / "p.toml"
    p.write_text(policy)
    run(["compile", str(p), "--target", target, "--out", str(work / "out")])


# -- dumps -------------------------------------------------------------------------------------------

LINE = st.one_of(st.sampled_from(DUMP_LINES or ["-A INPUT -p tcp --dport 22 -j ACCEPT"]),
                 st.lists(st.sampled_from(OPTIONS + VALUES), min_size=1, max_size=8).map(" ".join),
                 st.sampled_from(["*filter", "*nat", "*raw", "COMMIT", ":INPUT DROP [0:0]", ":USER - [0:0]",
                                  ":" + "a" * 30 + " - [0:0]", ":ACCEPT - [0:0]", "-N LOG", "-A INPUT -j NOPE",
                                  "-A INPUT -j USER", "-A USER -j INPUT", "\ufeff*filter", "# comment", ""]),
                 st.text(max_size=40))


@st.composite
def dumps(draw) -> str:
    body = draw(st.lists(LINE, max_size=25))
    if draw(st.booleans()):
        body = ["*filter", ":INPUT DROP [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":USER - [0:0]",
                *body, "COMMIT"]
    depth = draw(st.sampled_from([0, 0, 0, 20, 300]))
    body += [f":d{i} - [0:0]" for i in range(depth)] + [f"-A d{i} -j d{i + 1}" for i in range(depth - 1)]
    return "\n".join(body) + "\n"


@fuzz(ci_examples=60)
@given(dump=dumps(), latin1=st.booleans())
def test_fuzz_dumps(work, dump, latin1):
    p = work / "d.v4"
    p.write_bytes(dump.encode("latin-1", "replace") if latin1 else dump.encode())
    for args in (["parse", str(p)], ["lint", str(p)], ["analyze", str(p), "--service", "tcp/22"],
                 ["explain", str(p), "--packet", "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN iif eth0"],
                 ["diff", str(p), str(work / "dump.v4")]):
        run(args)


# -- ipsets files (issue 12: --ipsets) -----------------------------------------------------------------

IPSET_LINE = st.one_of(
    st.lists(st.sampled_from(["create", "add", "del", "flush", "destroy", "rename", "swap", "test", "list", "-N",
                              "-A", "-exist", "-!", "COMMIT", "#", "s1", "s2", "hash:ip", "hash:net", "hash:ip,port",
                              "bitmap:port", "list:set", "family", "inet", "inet6", "range", "1-1024", "timeout",
                              "0", "nomatch", "192.0.2.7", "198.51.100.0/24", "2001:db8::/32", "tcp:22", "'", '"']),
             max_size=6).map(" ".join),
    st.text(max_size=30))


@fuzz(ci_examples=60)
@given(lines=st.lists(IPSET_LINE, max_size=12))
def test_fuzz_ipsets_files(work, lines):
    sets = work / "sets"
    sets.write_text("\n".join(lines) + "\n")
    d = work / "set.v4"
    d.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set s1 src,dst -j ACCEPT\n"
                 "-A INPUT -m set ! --match-set s2 src -j DROP\nCOMMIT\n")
    for args in (["explain", str(d), "--ipsets", str(sets), "--packet", "tcp 192.0.2.7:40000 > 198.51.100.1:22 SYN"],
                 ["analyze", str(d), "--ipsets", str(sets), "--service", "tcp/22"],
                 ["diff", str(d), str(work / "dump.v4"), "--ipsets", str(sets)]):
        run(args)


# -- packet specs ------------------------------------------------------------------------------------

FIELDS = ["family", "proto", "src", "dst", "sport", "dport", "tcp_flags", "iif", "oif", "hook", "state", "t",
          "type", "code", "len", "ttl", "frag", "mf", "mark", "nosuch"]
FIELD_VALUES = st.one_of(st.integers(-2, 70000), st.sampled_from(["tcp", "udp", "icmp", "ipv6-icmp", "6", "SYN",
                                                                  "203.0.113.5", "2001:db8::1", "eth0", "INPUT",
                                                                  "NEW", "", "x" * 50]),
                         st.lists(st.sampled_from(["SYN", "ACK", "FIN", "RST", "nosuch"]), max_size=3),
                         st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=10))
SHORT = st.lists(st.sampled_from(["tcp", "udp", "icmp", "203.0.113.5:40000", ">", "198.51.100.1:22", "SYN", "ACK",
                                  "iif", "eth0", "state", "NEW", "hook", "OUTPUT", "2001:db8::1", "[2001:db8::2]:22",
                                  "type", "8", "mark", "0xffffffffff", ":", "a:b"]), max_size=10).map(" ".join)
SPECS = st.one_of(st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=8).map(json.dumps), SHORT,
                  st.text(max_size=60), st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@fuzz(ci_examples=300)
@given(spec=SPECS, batch=st.lists(st.one_of(SPECS, st.binary(max_size=30).map(lambda b: b.hex())), max_size=4),
       raw=st.binary(max_size=30))
def test_fuzz_packet_specs(work, spec, batch, raw):
    if spec.startswith("-"):
        spec = " " + spec  # an option to click, not a spec: covered by the argument fuzz
    run(["explain", str(work / "dump.v4"), "--packet", spec])
    (work / "batch.jsonl").write_bytes("\n".join(batch).encode() + b"\n" + raw)
    run(["explain", str(work / "fw.sh"), "--packets", str(work / "batch.jsonl"), "--json"])


# -- command-line arguments --------------------------------------------------------------------------

COMMANDS = {"parse", "lint", "explain", "analyze", "diff", "compile"}  # offline ones; none touches the kernel
FILES = ["dump.v4", "fw.sh", "policy.toml", "latin1.v4", "bom.v4", "pk.jsonl", "ipassmt", "adir", "missing.v4",
         "/dev/null", "", "-", "p.toml", "d.v4"]


@st.composite
def argvs(draw) -> list[str]:
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    params = main.get_command(click.Context(main), cmd).params
    options = sorted({o for p in params for o in p.opts} - {"--out"}) + ["--help", "--nosuch"]
    words = st.one_of(st.sampled_from(options), st.sampled_from(FILES), st.sampled_from(VALUES),
                      st.text(max_size=12).filter(lambda w: not w.startswith(("/", "--o"))))
    argv = [cmd, *draw(st.lists(words, max_size=7))]
    if cmd == "compile" and draw(st.booleans()):  # --out only ever into the fuzz's own directory
        argv += ["--out", draw(st.sampled_from(["out", "adir", "dump.v4", "outlink", "new/sub"]))]
    return argv


@fuzz(ci_examples=300)
@given(argv=argvs())
def test_fuzz_cli_arguments(work, argv):
    if not (work / "outlink").is_symlink():
        (work / "outlink").symlink_to(work / "adir")
    run(argv)
