"""`compile --out DIR` as root into a directory another user can write to (issue 14, medium 6; low:
ENOSPC): no symlink followed, no file of anyone else's replaced, atomic writes with explicit modes, and
a full disk is an error that leaves the previous files whole."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from .conftest import stockade

POLICY = 'admin = ["ops"]\n[groups]\nops = ["192.0.2.1"]\n'
OUT = ("rules.v4", "rules.v6", "ipsets")


def _policy(tmp_path, text=POLICY):
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


def test_planted_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "rules.v4").symlink_to(victim)
    r = stockade("compile", _policy(tmp_path), "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{out / 'rules.v4'}: error: cannot write: exists and was not written by stockade" in r.stderr
    assert victim.read_text() == "root:secret\n" and (out / "rules.v4").is_symlink()
    assert not (out / "rules.v6").exists()  # all or nothing


def test_out_dir_itself_a_symlink_is_refused(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "etc")
    r = stockade("compile", _policy(tmp_path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "is a symbolic link" in r.stderr
    assert not list((tmp_path / "etc").iterdir())


def test_foreign_files_are_not_clobbered_own_are_replaced(tmp_path):
    out = tmp_path / "out"
    assert stockade("compile", _policy(tmp_path), "--out", str(out)).returncode == 0
    first = (out / "rules.v4").stat().st_ino
    assert stockade("compile", _policy(tmp_path), "--out", str(out)).returncode == 0  # its own: replaced
    assert (out / "rules.v4").stat().st_ino != first  # by rename, not rewritten in place
    (out / "ipsets").write_text("the admin's own ipsets\n")
    r = stockade("compile", _policy(tmp_path), "--out", str(out))
    assert r.returncode == 2 and f"{out / 'ipsets'}: error: cannot write" in r.stderr
    assert (out / "ipsets").read_text() == "the admin's own ipsets\n"
    hard = tmp_path / "hard"
    os.link(out / "rules.v6", hard)  # a planted hard link is replaced, never written through
    (out / "ipsets").unlink()
    assert stockade("compile", _policy(tmp_path), "--out", str(out)).returncode == 0


def test_modes_are_explicit_whatever_the_umask(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-c", "import os, runpy, sys; os.umask(0); sys.argv = sys.argv[1:]; "
                    "runpy.run_module('stockade.cli', run_name='__main__')", "stockade", "compile",
                    _policy(tmp_path), "--out", str(out)], check=True, capture_output=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for name in OUT:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
    assert sorted(os.listdir(out)) == sorted(OUT)  # no temp file left


def test_full_disk_is_an_error_and_keeps_the_previous_files(tmp_path):
    """In a private mount namespace, a 64 KiB tmpfs: the first compile fits, a second one with a large
    group does not; the command says so (exit 2, no traceback) and the first compile's files are whole."""
    out = tmp_path / "out"
    out.mkdir()
    small = _policy(tmp_path)
    big = tmp_path / "big.toml"
    big.write_text('admin = ["ops"]\n[groups]\nops = { file = "list" }\n')
    (tmp_path / "list").write_text("".join(f"10.{n >> 8}.{n & 255}.1\n" for n in range(20000)))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", _FULL, "sh", str(out), small,
                        str(big), sys.executable], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "first: 0" and lines[1] == "second: 2", r.stdout + r.stderr
    assert ": error: cannot write: No space left on device" in r.stderr, r.stderr
    assert lines[2] == "unchanged: yes", r.stdout
    assert sorted(lines[3].split()) == sorted(OUT), r.stdout  # no temp file left behind


# $1 the mount point, $2 a small policy, $3 a large one, $4 python: compile both into the tmpfs, report.
_FULL = """mount -t tmpfs -o size=64k,mode=0755 stockade-test "$1" || exit 9
"$4" -m stockade.cli compile "$2" --out "$1" >/dev/null; echo "first: $?"
sum1=$(cat "$1/rules.v4" "$1/rules.v6" "$1/ipsets" | md5sum)
"$4" -m stockade.cli compile "$3" --out "$1" >/dev/null; echo "second: $?"
sum2=$(cat "$1/rules.v4" "$1/rules.v6" "$1/ipsets" | md5sum)
[ "$sum1" = "$sum2" ] && echo "unchanged: yes" || echo "unchanged: no"
ls -A "$1" | tr '\\n' ' '; echo
"""
