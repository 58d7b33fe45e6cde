"""The Ansible collection stockade.firewall, built with `ansible-galaxy collection build` and run with
`ansible-playbook` against three hosts that are network namespaces (ansible_connection: local and the
module's netns option), each reached over a management path from a second namespace (a TCP
connection to its port 22, the stand-in for Ansible's SSH):

- first run: every host changed (applied, then confirmed after a fresh connection got through);
- second run: every host unchanged;
- check mode with --diff: the changed packet classes are shown, the kernel is byte-identical;
- a policy that cuts the management path: the fresh connection fails, so nothing confirms, and after
  the timeout every host is back on the first policy's ruleset;
- `state: absent`: check mode reports a change and touches nothing; then stockade's part is gone from
  every host (no rule, chain, set or table of stockade's); a second run is unchanged.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.kernel.live import drop_dynamic_elements
from stockade.lab.topology import CLIENT_V4, SERVER_IN, SERVER_V4, Topology

from .conftest import CI

COLLECTION = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent
LISTENER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22)); s.listen()
while True:
    s.accept()[0].close()
"""
POLICY = """[server]
interfaces = ["{iface}"]
[groups]
admins = ["{admin}"]
[[allow]]
service = "ssh"
from = ["admins"]
[[allow]]
service = {services}
"""
PLAY = """
- hosts: fleet
  gather_facts: false
  tasks:
    - name: Apply the policy (the host rolls it back unless confirmed)
      stockade.firewall.policy:
        src: "{{ policy }}"
        netns: "{{ stockade_netns }}"
        confirm_timeout: "{{ confirm_timeout }}"
        executable: "{{ stockade_cmd }}"
      register: applied

    - name: Reconnect
      ansible.builtin.meta: reset_connection

    - name: A fresh connection over the management path
      ansible.builtin.command:
        argv: [ip, netns, exec, "{{ mgmt_ns }}", "{{ ansible_python_interpreter }}", -c,
               "import socket; socket.create_connection(('{{ server_ip }}', 22), 3)"]
      changed_when: false
      when: applied is changed and not ansible_check_mode

    - name: Confirm
      stockade.firewall.policy:
        state: confirmed
        netns: "{{ stockade_netns }}"
        executable: "{{ stockade_cmd }}"

    - name: Read stockade's facts
      stockade.firewall.facts:
        netns: "{{ stockade_netns }}"
        executable: "{{ stockade_cmd }}"

    - name: No drift, no alarm
      ansible.builtin.assert:
        that:
          - not ansible_facts.stockade.drift
          - ansible_facts.stockade.alarms | length == 0
          - ansible_facts.stockade.bans == [] and ansible_facts.stockade.feeds == []
"""
ABSENT = """
- hosts: fleet
  gather_facts: false
  tasks:
    - name: Take stockade off
      stockade.firewall.policy:
        state: absent
        netns: "{{ stockade_netns }}"
        root: "{{ boot_root }}"
        executable: "{{ stockade_cmd }}"
"""
RECAP = re.compile(r"^(h\d)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def kernel_text(ns) -> str:
    return "".join(ns.run(argv, check=False).stdout for argv in (["nft", "list", "ruleset"], ["iptables-save"],
                                                                 ["ip6tables-save"], ["ipset", "save"]))


def stateless(ns) -> str:
    """kernel_text without counters and what rate-limit meters learn (they expire by themselves)."""
    return "".join(re.sub(r" \[\d+:\d+\]$", "", ln) + "\n" for ln in (
                   drop_dynamic_elements(ns.run(["nft", "-s", "list", "ruleset"]).stdout) +
                   ns.run(["iptables-save"]).stdout + ns.run(["ip6tables-save"]).stdout +
                   ns.run(["ipset", "save"]).stdout).splitlines() if not ln.startswith("#"))


@pytest.fixture(scope="module")
def ansible_ok():
    missing = [t for t in ("ansible-playbook", "ansible-galaxy") if not (BIN / t).exists() and not shutil.which(t)]
    if missing:
        if CI:
            pytest.fail(f"ansible-core is not installed ({', '.join(missing)} missing): pip install -e .[test]")
        pytest.skip("ansible-core is not installed")


def tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else shutil.which(name)


def test_playbook_on_three_namespaces(kernel_ok, ansible_ok, tmp_path):
    env = dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "state"), ANSIBLE_HOME=str(tmp_path / "ansible"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible" / "tmp"), ANSIBLE_REMOTE_TMP=str(tmp_path / "ansible" /
                                                                                              "remote"),
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_RETRY_FILES_ENABLED="0")
    r = subprocess.run([tool("ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path",
                        str(tmp_path)], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    (tarball,) = tmp_path.glob("stockade-firewall-*.tar.gz")
    r = subprocess.run([tool("ansible-galaxy"), "collection", "install", str(tarball), "-p",
                        str(tmp_path / "collections")], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr

    wrapper = tmp_path / "stockade"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m stockade.cli "$@"\n')
    wrapper.chmod(0o755)
    policies = {}
    for name, admin, services in (("a", CLIENT_V4, '"http"'), ("b", CLIENT_V4, '["http", "https"]'),
                                  ("cut", "198.51.100.7", '"http"')):
        policies[name] = tmp_path / f"{name}.toml"
        policies[name].write_text(POLICY.format(iface=SERVER_IN, admin=admin, services=services))
    (tmp_path / "site.yml").write_text(PLAY)
    (tmp_path / "absent.yml").write_text(ABSENT)

    with contextlib.ExitStack() as stack:
        tops = [stack.enter_context(Topology()) for _ in range(3)]
        for t in tops:
            t.server.spawn([sys.executable, "-c", LISTENER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for t in tops:
            while ":22 " not in t.server.run(["ss", "-Hlnt"]).stdout:
                assert time.monotonic() < deadline, "the listener did not start"
                time.sleep(0.1)
        hosts = {f"h{i + 1}": {"stockade_netns": t.server.name, "mgmt_ns": t.client.name} for i, t in enumerate(tops)}
        (tmp_path / "inventory.json").write_text(json.dumps({"fleet": {"hosts": hosts, "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "stockade_cmd": str(wrapper), "server_ip": SERVER_V4, "boot_root": str(tmp_path / "root")}}}))

        def play(policy: str, timeout: int = 60, *extra: str, book: str = "site.yml") -> tuple[dict, str]:
            r = subprocess.run([tool("ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
                                str(tmp_path / book), "-e", f"policy={policies[policy]}",
                                "-e", f"confirm_timeout={timeout}", *extra], capture_output=True, text=True,
                               env=env, check=False, timeout=600)
            recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
                     for m in RECAP.findall(r.stdout)}
            assert set(recap) == set(hosts), r.stdout + r.stderr
            return recap, r.stdout

        recap, out = play("a")
        assert all(h["changed"] == 2 and h["failed"] == 0 for h in recap.values()), out  # applied, confirmed
        recap, out = play("a")
        assert all(h["changed"] == 0 and h["failed"] == 0 for h in recap.values()), out

        before = [kernel_text(t.server) for t in tops]
        recap, out = play("b", 60, "--check", "--diff")
        assert [kernel_text(t.server) for t in tops] == before
        assert all(h["changed"] >= 1 and h["failed"] == 0 for h in recap.values()), out
        assert out.count("tcp/443") >= 3 and "ACCEPT" in out, out  # each host's diff names the new class

        started = time.monotonic()
        recap, out = play("cut", 20)
        assert time.monotonic() - started < 20, "the play outlasted the timer: the test proves nothing"
        assert all(h["failed"] == 1 for h in recap.values()), out  # the management path is cut: no confirm
        for t in tops:  # each host's timer fires 20 s after its apply
            deadline = time.monotonic() + 40
            while json.loads(subprocess.run([str(wrapper), "status", "--json", "--netns", t.server.name],
                                            capture_output=True, text=True, env=env, check=False).stdout)["pending"]:
                assert time.monotonic() < deadline, "the rollback timer did not fire"
                time.sleep(1)
        for t in tops:
            r = subprocess.run([str(wrapper), "apply", str(policies["a"]), "--check", "--json", "--netns",
                                t.server.name], capture_output=True, text=True, env=env, check=False)
            plan = json.loads(r.stdout)
            assert not plan["changed"] and not plan["pending"], plan  # policy a is live again
            probe = t.client.run([sys.executable, "-c", f"import socket; socket.create_connection(('{SERVER_V4}', "
                                  "22), 3)"], check=False)
            assert probe.returncode == 0, probe.stderr

        before = [stateless(t.server) for t in tops]  # (the probes just made move counters)
        recap, out = play("a", 60, "--check", "--diff", book="absent.yml")
        assert all(h["changed"] == 1 and h["failed"] == 0 for h in recap.values()), out
        after = [stateless(t.server) for t in tops]
        assert after == before, "\n".join(difflib.unified_diff("".join(before).splitlines(), "".join(after).splitlines()))
        assert "stockade part" in out, out
        recap, out = play("a", book="absent.yml")
        assert all(h["changed"] == 1 and h["failed"] == 0 for h in recap.values()), out
        for t in tops:
            text = kernel_text(t.server)
            assert "stk-" not in text and "stockade" not in text, text
        recap, out = play("a", book="absent.yml")
        assert all(h["changed"] == 0 and h["failed"] == 0 for h in recap.values()), out
