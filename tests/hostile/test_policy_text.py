"""Policy text that used to give tracebacks (issue 14, low): a file name with a quote, TOML nested
5,000 deep, bytes that are not UTF-8."""
from __future__ import annotations

import json

import pytest

from .conftest import POSITIONED, refused, stockade

POLICY = 'admin = ["ops"]\n[groups]\nops = ["192.0.2.1"]\n'


def test_policy_file_name_with_a_quote_compiles_for_every_back_end(tmp_path):
    """The rule comments name the policy file; nft strings cannot hold `"`, so nftables output crashed."""
    p = tmp_path / 'we"ird.toml'
    p.write_text(POLICY)
    for target in ("iptables", "nftables"):
        r = stockade("compile", str(p), "--target", target, "--out", str(tmp_path / target))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    nft = (tmp_path / "nftables" / "ruleset.nft").read_text()
    assert 'comment "we_ird.toml:1 admin ops"' in nft


def test_toml_nested_5000_deep_is_a_positioned_error(tmp_path):
    p = tmp_path / "deep.toml"
    p.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    for cmd in (["compile", str(p), "--out", str(tmp_path / "o")], ["check", str(p)], ["lab", str(p)],
                ["diff", str(p), str(p)]):
        err = refused(stockade(*cmd), 1)  # a policy with an error in it: errors in the input (exitcodes.py)
        assert f"{p}:1:37: error: values nested more than 32 deep" in err


def test_policy_not_utf8_gives_line_and_column(tmp_path):
    p = tmp_path / "p.toml"
    p.write_bytes(POLICY.encode() + b'# caf\xe9\n')
    err = refused(stockade("compile", str(p), "--out", str(tmp_path / "o")), 2)  # unreadable input (exitcodes.py)
    assert f"{p}:4:6: error: cannot read input: byte 0xe9 is not UTF-8" in err
    assert POSITIONED.search(err)


@pytest.mark.kernel
def test_lab_on_a_policy_naming_no_port_runs(kernel_ok, tmp_path):
    """Found with the quoted file name: a policy with admin groups only names no TCP port, so nothing
    listens, and the lab's established-connection probe indexed an empty list (IndexError)."""
    p = tmp_path / "p.toml"
    p.write_text(POLICY)
    r = stockade("lab", str(p), "--family", "4", "--json", timeout=300)
    assert "Traceback" not in r.stderr and r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["rows"]
