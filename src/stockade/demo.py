"""`stockade demo`: what stockade makes of a firewall script in the tutorials' style.

Later work turns this into the full lab demo (policy, namespaces, real probes).
"""
from __future__ import annotations

from importlib.resources import files

import click

from .parse.read import read
from .render.save import render_save

SCRIPT = "demo-firewall.sh"


def run_demo() -> int:
    text = files("stockade.data").joinpath(SCRIPT).read_text()
    click.secho(f"== importing {SCRIPT}, a seed-style firewall script ==", bold=True)
    click.echo(text)
    b = read(text, SCRIPT, "script")
    click.secho("== what stockade finds ==", bold=True)
    for d in b.diagnostics:
        click.secho(str(d), fg={"error": "red", "warning": "yellow"}.get(d.severity))
    for rs in b.rulesets.values():
        click.secho(f"== the ruleset the kernel would get ({rs.family.cmd}-save, canonical) ==", bold=True)
        click.echo(render_save(rs), nl=False)
    errors = sum(d.severity == "error" for d in b.diagnostics)
    click.secho(f"== {errors} command(s) the real iptables would refuse; each is named above with its fix ==",
                bold=True)
    return 0
