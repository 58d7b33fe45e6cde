"""Group names and members a policy may not use (issue 14: medium 4; low: trailing newline, /0 members)."""
from __future__ import annotations

from stockade.policy.compile import compile_policy

from .conftest import refused, stockade


def test_group_named_like_a_builtin_set_is_refused_at_its_line(tmp_path):
    """A group `bogons` used to be replaced by the built-in bogon list: the admin's /24 became every
    private range with admin access. The name is reserved, refused where it is written."""
    p = tmp_path / "p.toml"
    p.write_text('admin = ["bogons"]\n\n[groups]\nbogons = ["192.0.2.0/24"]\n')
    err = refused(stockade("compile", str(p), "--out", str(tmp_path / "out")))
    assert f"{p}:4:1: error: groups.bogons: group name `bogons` is reserved" in err
    assert not (tmp_path / "out").exists()


def test_group_name_with_trailing_newline_is_refused(tmp_path):
    """`$` in the name pattern matched before a final newline, so `"adm\\n"` passed the schema."""
    p = tmp_path / "p.toml"
    p.write_text('admin = ["adm\\n"]\n[groups]\n"adm\\n" = ["192.0.2.1"]\n')
    err = refused(stockade("compile", str(p), "--out", str(tmp_path / "out")))
    assert "group name 'adm\\n'" in err and f"{p}:2:1:" in err  # the [groups] header: the key is quoted


def test_inline_member_for_every_address_is_refused(tmp_path):
    """Group files refuse /0; inline members did not, and on nftables that made everyone an admin."""
    for every in ("0.0.0.0/0", "::/0"):
        p = tmp_path / "p.toml"
        p.write_text(f'admin = ["ops"]\n[groups]\nops = ["192.0.2.1", "{every}"]\n')
        err = refused(stockade("compile", str(p), "--out", str(tmp_path / "out")))
        assert f"{p}:3:1: error: groups.ops: `{every}` is every address" in err
    p.write_text('admin = ["ops"]\n[groups]\nops = ["192.0.2.1", "2001:db8::/32"]\n')
    assert compile_policy(p).rulesets  # narrower members still compile
