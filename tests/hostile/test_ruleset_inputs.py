"""Dumps and packet files that used to give tracebacks, wrong exit codes or wrong positions (issue 14,
low). What iptables-restore does is measured with the real one in a throwaway namespace, and stockade
must refuse what it refuses, at the same line."""
from __future__ import annotations

import json

import pytest

from .conftest import POSITIONED, refused, stockade

HEAD = "*filter\n:INPUT ACCEPT [0:0]\n"


def _nested(depth: int) -> str:
    lines = [f":c{i} - [0:0]" for i in range(depth)] + ["-A INPUT -j c0"]
    lines += [f"-A c{i} -j c{i + 1}" for i in range(depth - 1)] + [f"-A c{depth - 1} -p tcp --dport 22 -j ACCEPT"]
    return HEAD + "\n".join(lines) + "\nCOMMIT\n"


def test_chains_nested_500_deep_are_a_positioned_error_in_lint_and_analyze(tmp_path):
    p = tmp_path / "deep.v4"
    p.write_text(_nested(500))
    for cmd in ("lint", "analyze"):
        out = refused(stockade(cmd, str(p)))
        assert f"{p}:631:1: error: jump to c128 nests chains more than 128 deep" in out
    r = stockade("explain", str(p), "--packet", "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN")
    assert r.returncode == 0 and "verdict: ACCEPT" in r.stdout and "Traceback" not in r.stderr


def test_chains_nested_3000_deep_explain_says_unknown(tmp_path):
    p = tmp_path / "deep.v4"
    p.write_text(_nested(3000))
    r = stockade("explain", str(p), "--packet", "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN")
    assert "Traceback" not in r.stderr and "verdict: UNKNOWN" in r.stdout and "deeper than the simulator" in r.stdout


def test_non_utf8_byte_in_packets_file_is_a_positioned_error(tmp_path):
    rules, packets = tmp_path / "r.v4", tmp_path / "p.jsonl"
    rules.write_text(HEAD + "-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
    packets.write_bytes(b'tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN\n  \xff\n  {"x": \n')
    r = stockade("explain", str(rules), "--packets", str(packets), "--json")
    assert "Traceback" not in r.stderr and r.returncode == 2
    out = r.stdout.splitlines()
    assert json.loads(out[0])["verdict"] == "ACCEPT"
    assert f"{packets}:2:3: error: byte 0xff is not UTF-8" in out[1]
    assert f"{packets}:3:8: error: packet spec is not valid JSON" in out[2]


def _restore(ns, cmd: str, text: str):
    return ns.run([cmd], input=text, check=False)


@pytest.mark.kernel
@pytest.mark.parametrize("line, col, why", [
    (f":{'a' * 36} - [0:0]", 2, "is longer than 28 characters"), (f":{'a' * 29} - [0:0]", 2, "longer than 28"),
    (":ACCEPT - [0:0]", 2, "is the name of a target"), (":!x - [0:0]", 2, "is not a valid chain name"),
    ("-N LOG", 4, "is the name of a target")])
def test_chain_names_iptables_restore_refuses_are_errors(netns, tmp_path, line, col, why):
    text = HEAD + line + "\nCOMMIT\n"
    assert _restore(netns, "iptables-restore", text).returncode != 0  # measured: iptables-nft refuses it
    p = tmp_path / "r.v4"
    p.write_text(text)
    err = refused(stockade("parse", str(p)))
    assert f"{p}:3:{col}: error: " in err and why in err


@pytest.mark.kernel
def test_chain_names_iptables_restore_takes_are_accepted(netns, tmp_path):
    text = HEAD + f":{'a' * 28} - [0:0]\n:x! - [0:0]\n:NOPE - [0:0]\n:LOG - [0:0]\nCOMMIT\n"
    assert _restore(netns, "iptables-restore", text).returncode == 0
    p = tmp_path / "r.v4"
    p.write_text(text)
    assert stockade("parse", str(p)).returncode == 0


@pytest.mark.kernel
def test_jump_to_undefined_chain_is_an_error_where_iptables_restore_refuses_it(netns, tmp_path):
    text = HEAD + "-A INPUT -j NOPE\nCOMMIT\n"
    r = _restore(netns, "iptables-restore", text)
    assert r.returncode != 0 and "Chain 'NOPE' does not exist" in r.stderr
    p = tmp_path / "r.v4"
    p.write_text(text)
    err = refused(stockade("lint", str(p)))
    # iptables-restore checks jumps when it commits the table (tests/kernel/test_realworld_dumps.py measures it)
    assert f"{p}:4:1: error: jump to chain `NOPE`, which does not exist" in err
    known = HEAD + "-A INPUT -p tcp -j TPROXY --on-port 1\nCOMMIT\n"  # a real target stockade does not model
    p.write_text(known.replace("*filter", "*mangle").replace(":INPUT", ":PREROUTING").replace("-A INPUT",
                                                                                               "-A PREROUTING"))
    assert "error" not in stockade("parse", str(p)).stderr


@pytest.mark.kernel
def test_bom_is_reported_at_1_1_as_iptables_restore_refuses_it(netns, tmp_path):
    text = "\ufeff" + HEAD + "-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    r = _restore(netns, "iptables-restore", text)
    assert r.returncode != 0 and "line 1 failed" in r.stderr  # measured: the whole file is refused
    p = tmp_path / "r.v4"
    p.write_text(text, encoding="utf-8")
    r = stockade("lint", str(p))
    assert r.returncode == 1 and "outside a table" not in r.stdout + r.stderr
    assert f"{p}:1:1: error: the file starts with a byte order mark (U+FEFF): iptables-restore fails at line 1" \
        in r.stdout
    assert stockade("diff", str(p), str(p)).returncode == 2


def test_analyze_on_a_looping_ruleset_exits_1(tmp_path):
    p = tmp_path / "loop.v4"
    p.write_text(HEAD + ":a - [0:0]\n:b - [0:0]\n-A INPUT -j a\n-A a -j b\n-A b -j a\nCOMMIT\n")
    r = stockade("analyze", str(p))
    assert r.returncode == 1 and f"{p}:7:9: error: this rule makes chains loop" in r.stderr


def test_diff_on_an_unreadable_input_exits_2(tmp_path):
    good = tmp_path / "good.v4"
    good.write_text(HEAD + "COMMIT\n")
    refused_dump = tmp_path / "bad.v4"
    refused_dump.write_text(HEAD + "-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    latin1 = tmp_path / "latin1.v4"
    latin1.write_bytes(HEAD.encode() + b"-A INPUT -m comment --comment caf\xe9 -j ACCEPT\nCOMMIT\n")
    for bad in (refused_dump, latin1):
        for args in ((bad, good), (good, bad)):
            err = refused(stockade("diff", *map(str, args)), 2)
            assert f"{bad}:3:" in err
    r = stockade("diff", str(tmp_path / "missing.v4"), str(good))
    assert r.returncode == 2 and "No such file" in r.stderr


def test_non_utf8_errors_give_line_and_column(tmp_path):
    p = tmp_path / "latin1.v4"
    p.write_bytes(HEAD.encode() + b"-A INPUT -m comment --comment \xc3\xa9t\xe9 -j ACCEPT\nCOMMIT\n")
    for cmd in ("parse", "lint", "analyze", "audit"):
        err = refused(stockade(cmd, str(p)), 2)
        assert f"{p}:3:33: error: cannot read input: byte 0xe9 is not UTF-8" in err  # characters, not bytes
    assert POSITIONED.search(err)


def test_short_packet_spec_with_a_bad_number_is_a_positioned_error(tmp_path):
    """Found by the fuzz (`0 0 > 0 T :`): a key's value that is not a number raised ValueError."""
    rules = tmp_path / "r.v4"
    rules.write_text(HEAD + "COMMIT\n")
    for spec, col, what in (("0 0 > 0 T :", 11, "`:` is not a number (after `t`)"),
                            ("tcp 192.0.2.1:1 -> 192.0.2.2:22 SYN mark zz", 42, "`zz` is not a number"),
                            ("tcp 192.0.2.1:1 > 192.0.2.2:22 SYN bogus 1", 36, "unexpected `bogus`")):
        err = refused(stockade("explain", str(rules), "--packet", spec), 2)
        assert f"--packet:1:{col}: error: {what}" in err


@pytest.mark.parametrize("args", [["parse", "a\0b"], ["lint", "\0"], ["analyze", "\0"], ["diff", "\0", "x"],
                                  ["explain", "\0", "--packet", "x"], ["compile", "\0", "--out", "o"],
                                  ["compile", "p.toml", "--out", "o\0"], ["explain", "r.v4", "--packets", "\0"],
                                  ["analyze", "r.v4", "--ipassmt", "\0"]])
def test_file_argument_with_a_nul_byte_is_an_error_not_a_traceback(tmp_path, monkeypatch, args):
    """Found by the fuzz: a NUL in a file name raised ValueError("embedded null byte") (in-process: an
    argv cannot carry a NUL, but a name read from a file or a pipe can)."""
    from click.testing import CliRunner

    from stockade.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text('admin = ["ops"]\n[groups]\nops = ["192.0.2.1"]\n')
    (tmp_path / "r.v4").write_text(HEAD + "COMMIT\n")
    r = CliRunner().invoke(main, args)
    assert isinstance(r.exception, SystemExit) and r.exit_code in (1, 2), r.exception
    assert "a file name cannot hold a NUL byte" in r.stderr
