"""The throwaway namespace helper itself: isolation and cleanup on every exit path."""
from __future__ import annotations

import subprocess
import time

import pytest

from stockade.kernel import netns as netns_mod
from stockade.kernel.netns import Netns, NetnsError, namespaces


def test_isolated_and_named(netns):
    assert netns.name.startswith(netns_mod.process_prefix())
    assert netns.name in namespaces()
    assert "-A " not in netns.run(["iptables-save"]).stdout
    assert "UP" in netns.run(["ip", "-o", "link", "show", "lo"]).stdout


def test_run_checks_and_refuses_shell_strings(netns):
    with pytest.raises(NetnsError) as err:
        netns.run(["iptables", "-A", "NOSUCHCHAIN", "-j", "ACCEPT"])
    assert err.value.returncode != 0 and err.value.stderr
    assert netns.run(["false"], check=False).returncode == 1
    assert netns.run(["cat"], input="hello\n").stdout == "hello\n"
    with pytest.raises(TypeError):
        netns.run("iptables -L")  # a string would be split into characters; refused outright


def test_deleted_with_leftover_processes(kernel_ok):
    with Netns() as ns:
        proc = ns.spawn(["sleep", "300"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5  # `ip netns exec` enters the namespace a moment after spawn returns
        while not ns.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ns.pids()
    assert ns.name not in namespaces()
    assert proc.wait(timeout=10) != 0


def test_cleanup_on_keyboard_interrupt(kernel_ok):
    with pytest.raises(KeyboardInterrupt), Netns() as ns:
        raise KeyboardInterrupt
    assert ns.name not in namespaces()


def test_interrupt_during_cleanup_is_held_back(kernel_ok, monkeypatch):
    real, calls = netns_mod.remove, []

    def interrupted_once(name):
        calls.append(name)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(name)

    monkeypatch.setattr(netns_mod, "remove", interrupted_once)
    with pytest.raises(KeyboardInterrupt), Netns() as ns:
        pass
    assert len(calls) == 2 and ns.name not in namespaces()


def test_a_namespace_no_with_has_taken_yet_is_deleted_by_close_all(kernel_ok):
    """A signal that lands after a Netns is made but before the `with` or ExitStack that would close it
    has taken it (a lab's third host, say): the CLI's way out closes every namespace still open."""
    ns = Netns().__enter__()  # made, and nothing will close it
    other = Netns().__enter__()
    assert {ns.name, other.name} <= set(namespaces())
    netns_mod.close_all()
    assert not {ns.name, other.name} & set(namespaces()) and not netns_mod._OPEN
    netns_mod.close_all()  # nothing left: a no-op
