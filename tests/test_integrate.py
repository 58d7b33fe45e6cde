"""`stockade integrate fail2ban --root DIR`: the action file lands in DIR/etc/fail2ban/action.d, and is
refused, without a traceback, where no fail2ban configuration exists; what the action hands `stockade ban`
that is not an address is refused before anything is touched."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", "integrate", *args], capture_output=True, text=True,
                          env=os.environ)


def test_installs_the_action(tmp_path):
    (tmp_path / "etc/fail2ban/action.d").mkdir(parents=True)
    p = run("fail2ban", "--root", str(tmp_path))
    assert p.returncode == 0, p.stderr
    action = tmp_path / "etc/fail2ban/action.d/stockade.conf"
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(action.read_text())
    assert conf["Definition"]["actionban"] == "<stockade> ban <ip> --timeout <bantime>"
    assert conf["Definition"]["actionunban"] == "<stockade> unban <ip>"
    assert oct(action.stat().st_mode & 0o777) == "0o644"


def test_refuses_without_fail2ban(tmp_path):
    p = run("fail2ban", "--root", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "fail2ban" in p.stderr
    assert not (tmp_path / "etc").exists()


def test_ban_refuses_what_is_not_an_address(tmp_path):
    for word in ("not-an-ip", "192.0.2.0/24", "999.1.1.1", "--"):
        p = subprocess.run([sys.executable, "-m", "stockade.cli", "ban", "--", word], capture_output=True, text=True,
                           env={**os.environ, "STOCKADE_STATE_DIR": str(tmp_path)})
        assert p.returncode == 2 and "Traceback" not in p.stderr, (word, p.stderr)
    assert not list(tmp_path.iterdir())  # refused before any state was touched
