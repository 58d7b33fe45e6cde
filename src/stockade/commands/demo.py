"""`stockade demo`, the README's main command: the whole job on the built-in mail/web policy.

0. Import: a seed-style script read with its defects named (what admins start from).
1. The plan: what the policy opens to whom, and the rulesets it compiles to.
2. The lab: the policy loaded in throwaway namespaces, probed with real packets from an admin
   host and internet hosts, every outcome compared with the simulator's prediction.
3. A lockout undone: in another pair of namespaces, `stockade apply` refuses a policy that
   would cut the admin off, applies it anyway with --force, and the detached timer puts the
   previous ruleset back; a real SSH connection attempt from the admin shows each step.

Everything happens in namespaces the demo creates and always removes; the exit status is
non-zero if any probe disagrees with its prediction or the rollback does not happen.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from importlib.resources import as_file, files
from pathlib import Path

import click

from ..child import CWD, python_code, python_module
from ..lab.run import run_lab
from ..lab.topology import CLIENT_V4, SERVER_IN, SERVER_V4, Topology
from ..parse.read import read
from ..policy.compile import CompiledPolicy
from ..policy.summary import egress_table, service_table
from ..render.save import render_save
from .exitcodes import FINDINGS, OK
from .inputs import load_policy

SCRIPT, POLICY = "demo-firewall.sh", "demo-policy.toml"
SHOWN = 14  # lines of each command's output
TIMEOUT = 5  # seconds the lockout demo waits for a confirm that never comes
LOCKOUT = """[server]
interfaces = ["{iface}"]
[groups]
admins = ["{admin}"]
[[allow]]
service = "ssh"
from = ["admins"]
[[allow]]
service = ["http", "https", "smtp"]
"""


def _title(text: str) -> None:
    click.secho(f"\n== {text} ==", bold=True)


def _import() -> None:
    text = files("stockade.data").joinpath(SCRIPT).read_text(encoding="utf-8")
    _title(f"import: {SCRIPT}, a firewall script in the tutorials' style")
    b = read(text, SCRIPT, "script")
    for d in b.diagnostics:
        if d.severity != "note":
            click.secho(str(d), fg={"error": "red", "warning": "yellow"}.get(d.severity))
    errors = sum(d.severity == "error" for d in b.diagnostics)
    click.echo(f"  {errors} command(s) the real iptables would refuse, each named with its fix; "
               "the policy below does the job instead")


def _plan(path: Path) -> CompiledPolicy:
    c = load_policy(str(path))
    _title(f"the plan: {POLICY} (the web/mail/SSH/DNS server of seed 003)")
    click.echo(c.text)
    for r in service_table(c.policy):
        limit = f", {r['limit']}" if r["limit"] else ""
        click.echo(f"  in   {r['service']:<10} {r['ports']:<16} from {r['from']}{limit}")
    for r in egress_table(c.policy):
        click.echo(f"  out  {r['service']:<10} {r['ports']:<16} to {r['to']}")
    for rs in c.rulesets.values():
        text = render_save(rs)
        click.echo(f"  {rs.family.cmd}-restore: {sum(line.startswith('-A') for line in text.splitlines())} rules, "
                   f"{len(rs.sets)} sets")
    return c


def _stockade(state: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command line, as the admin types it in an SSH session from the admin host."""
    click.secho(f"admin@{CLIENT_V4}$ stockade {' '.join(args)}", fg="cyan")
    env = dict(os.environ, SSH_CONNECTION=f"{CLIENT_V4} 50022 {SERVER_V4} 22", STOCKADE_STATE_DIR=str(state))
    r = subprocess.run(python_module("stockade.cli", *args), capture_output=True, text=True, env=env, cwd=CWD)
    lines = (r.stdout + r.stderr).rstrip().splitlines()
    for line in lines[:SHOWN]:
        click.echo(f"  {line}")
    if len(lines) > SHOWN:
        click.echo(f"  ... ({len(lines) - SHOWN} more lines)")
    return r


def _ssh_open(topo: Topology) -> bool:
    """Whether the admin host completes a TCP handshake with the server's SSH port."""
    probe = "import socket,sys; socket.create_connection((sys.argv[1], 22), timeout=1).close()"
    return topo.client.run(python_code(probe, SERVER_V4), check=False).returncode == 0


def _say_ssh(topo: Topology, expect: bool) -> bool:
    got = _ssh_open(topo)
    click.secho(f"  admin {CLIENT_V4} -> {SERVER_V4}:22 {'connects' if got else 'is blocked'}",
                fg="green" if got == expect else "red")
    return got == expect


def _lockout(tmp: Path) -> bool:
    """Good policy confirmed; bad policy refused, forced, then rolled back by the timer."""
    _title("a lockout, undone without the admin's help")
    good, bad = tmp / "good.toml", tmp / "bad.toml"
    good.write_text(LOCKOUT.format(iface=SERVER_IN, admin=CLIENT_V4))
    bad.write_text(LOCKOUT.format(iface=SERVER_IN, admin="198.51.100.99"))
    with Topology() as topo:
        ns = ["--netns", topo.server.name]
        sshd = topo.server.spawn(python_module("stockade.lab.services", "tcp:22"), stdout=subprocess.PIPE,
                                 text=True, cwd=CWD)
        try:
            sshd.stdout.readline()  # `ready`
            ok = _stockade(tmp, "apply", str(good), *ns, "--confirm-timeout", "0").returncode == 0
            ok &= _say_ssh(topo, True)
            click.echo("  now a policy whose admin group no longer holds the admin's address:")
            ok &= _stockade(tmp, "apply", str(bad), *ns).returncode != 0  # the pre-apply check refuses it
            ok &= _say_ssh(topo, True)
            click.echo(f"  the admin insists (--force); nobody confirms within {TIMEOUT} s:")
            ok &= _stockade(tmp, "apply", str(bad), *ns, "--force", "--confirm-timeout", str(TIMEOUT)).returncode == 0
            ok &= _say_ssh(topo, False)
            start = time.monotonic()
            while not _ssh_open(topo) and time.monotonic() - start < TIMEOUT + 5:
                time.sleep(0.25)
            click.echo(f"  ... {time.monotonic() - start:.1f} s later:")
            ok &= _say_ssh(topo, True)
            status = _stockade(tmp, "status", *ns)
            ok &= status.returncode == 0 and "drift: none" in status.stdout
        finally:
            sshd.kill()
            sshd.wait()
    return ok


@click.command("demo")
def command() -> None:
    """Import a seed-style firewall script with classic mistakes; show what stockade finds."""
    sys.exit(_run())


def _run() -> int:
    with as_file(files("stockade.data").joinpath(POLICY)) as path, tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        _import()
        c = _plan(path)
        _title("the lab: real packets in throwaway namespaces, each compared with the prediction")
        report = run_lab(c, str(path), lambda m: click.echo(f"  {m}", err=True))
        click.echo(report.table())
        rolled_back = _lockout(Path(tmp))
        _title(f"done in {time.monotonic() - started:.0f} s: {report.mismatches} mismatch(es); "
               f"lockout {'rolled back' if rolled_back else 'NOT rolled back'}")
        return OK if not report.mismatches and rolled_back else FINDINGS
