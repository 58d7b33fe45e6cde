"""A group's `file =` names any path (issue 14, medium 10): only a regular file of bounded size is
read, never a FIFO or a device; an error repeats only the offending word, cut short, and a file that is
not a list at all is not quoted line by line."""
from __future__ import annotations

import os

from .conftest import refused, stockade

SECRET = "s3cr3t-hash-value-that-must-not-leak"


def _policy(tmp_path, member_file: str):
    p = tmp_path / "p.toml"
    p.write_text(f'admin = ["ops"]\n[groups]\nops = {{ file = "{member_file}" }}\n')
    return p


def test_shadow_like_file_is_not_echoed(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("".join(f"user{n}:$6${SECRET}{n}:19000:0:99999:7:::\n" for n in range(30)))
    err = refused(stockade("compile", str(_policy(tmp_path, "shadow")), "--out", str(tmp_path / "o")))
    assert f"{shadow}:1:1: error: `user0:$6$s3cr3t-…` is not an address or network" in err
    assert SECRET not in err and "19000" not in err
    assert err.count("is not an address") == 5 and "25 more lines are not addresses either" in err


def test_two_words_on_a_line_point_at_the_second(tmp_path):
    (tmp_path / "list").write_text("192.0.2.1\n192.0.2.2 " + "x" * 100 + "\n")
    err = refused(stockade("compile", str(_policy(tmp_path, "list")), "--out", str(tmp_path / "o")))
    assert f"{tmp_path / 'list'}:2:11: error: `{'x' * 16}…`: one address or CIDR per line" in err


def test_fifo_and_devices_are_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # nobody ever writes: reading it would block for ever
    for name in ("fifo", "/dev/zero", "/dev/null", str(tmp_path)):
        p = _policy(tmp_path, name)
        err = refused(stockade("compile", str(p), "--out", str(tmp_path / "o"), timeout=20))
        assert f"{p}:3:1: error: cannot read group file" in err
        assert "not a regular file" in err or "Is a directory" in err


def test_oversized_file_is_refused(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate((128 << 20) + 1)  # sparse: no disk used
    err = refused(stockade("compile", str(_policy(tmp_path, "big")), "--out", str(tmp_path / "o")))
    assert "larger than 128 MiB" in err
