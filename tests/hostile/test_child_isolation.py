"""Child interpreters run isolated (issue 14, medium 5): `python -m X` puts the working directory first
on sys.path, so a `stockade/` package or a `socket.py` in the directory root ran `stockade lab` from
would run as root. Every child stockade starts (lab agents, listeners, packet senders, the NFLOG
listener, the demo's commands and probes) is started here from such a directory; none may import from it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from stockade.child import python_code, python_module
from stockade.commands import demo
from stockade.lab.topology import Topology
from stockade.model import Family

PLANT = "open({marker!r}, 'a').write({name!r} + '\\n')\n"
NAMES = ("stockade/__init__.py", "stockade/lab/__init__.py", "socket.py", "json.py", "ipaddress.py",
         "scapy/__init__.py")


@pytest.fixture
def hostile_cwd(tmp_path, monkeypatch):
    """A working directory full of modules that record being imported; the test runs from it."""
    bad, marker = tmp_path / "cwd", tmp_path / "imported"
    for name in NAMES:
        f = bad / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(PLANT.format(marker=str(marker), name=name))
    monkeypatch.chdir(bad)
    yield marker
    assert not marker.exists(), f"a child imported from the caller's directory: {marker.read_text()}"


def test_plain_python_m_would_import_from_the_directory(hostile_cwd):
    """The hazard is real: the same directory hijacks a plain `python -m`."""
    subprocess.run([sys.executable, "-m", "stockade.lab.services", "--help"], capture_output=True, timeout=30)
    assert hostile_cwd.exists()
    hostile_cwd.unlink()


def test_child_argv_imports_this_stockade_only(hostile_cwd, tmp_path):
    r = subprocess.run(python_module("stockade.cli", "--help"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "stockade" in r.stdout
    r = subprocess.run(python_code("import json, socket, sys; print(sys.argv[1])", "x"), capture_output=True,
                       text=True, timeout=60)
    assert r.stdout == "x\n"


@pytest.mark.kernel
def test_lab_children_do_not_import_from_the_working_directory(kernel_ok, hostile_cwd, tmp_path):
    """A whole lab run (agents, listeners, injectors) from the hostile directory, IPv4 only."""
    from stockade.lab.run import run_lab
    from stockade.policy.compile import compile_policy

    policy = tmp_path / "p.toml"
    policy.write_text('admin = ["ops"]\n[groups]\nops = ["192.0.2.7"]\n[[allow]]\nservice = "https"\n')
    report = run_lab(compile_policy(str(policy)), str(policy), families=[Family.IPV4])
    assert report.rows and not report.mismatches


@pytest.mark.kernel
def test_demo_children_do_not_import_from_the_working_directory(kernel_ok, hostile_cwd, tmp_path):
    dump = tmp_path / "r.v4"
    dump.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
    assert demo._stockade(tmp_path, "parse", str(dump)).returncode == 0
    with Topology() as topo:
        assert demo._ssh_open(topo) is False  # its probe ran (nothing listens on the server's port 22)


@pytest.mark.kernel
def test_nflog_listener_does_not_import_from_the_working_directory(kernel_ok, hostile_cwd):
    from stockade.kernel.host import Host
    from stockade.kernel.netns import Netns
    from stockade.kernel.nflog import Listener

    with Netns() as ns:
        heard = []
        assert list(Listener(Host(ns.name), 3).packets(1.0, lambda: False, ready=lambda: heard.append(1))) == []
        assert heard == [1]  # it bound the group: the child ran
