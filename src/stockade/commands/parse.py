"""`stockade parse`: a ruleset in canonical iptables-save form or JSON."""
from __future__ import annotations

import json
import sys

import click

from ..model import Family
from ..parse.script import Invocation
from ..render.json import ruleset_json
from ..render.save import render_save
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import load_ruleset


@click.command("parse")
@click.argument("file")
@options.FROM
@click.option("--to", "out", type=click.Choice(["iptables-save", "json"]), default="iptables-save",
              show_default=True)
@options.family("address family (default: guessed; all for scripts)")
@options.script
def command(file: str, fmt: str, out: str, family: Family | None, how: Invocation) -> None:
    """Read FILE and print it in canonical iptables-save form (or JSON)."""
    b, _ = load_ruleset(file, fmt, family, how)
    for d in b.diagnostics:
        if d.severity != "note":
            click.echo(str(d), err=True)
    rulesets = [rs for f, rs in sorted(b.rulesets.items()) if family is None or f is family]
    if out == "json":
        click.echo(json.dumps({"rulesets": [ruleset_json(rs) for rs in rulesets],
                               "diagnostics": [d.to_json() for d in b.diagnostics]}, indent=2))
    else:
        for rs in rulesets:
            click.echo(f"# {rs.family.cmd}-save (canonical, by stockade)")
            click.echo(render_save(rs), nl=False)
    sys.exit(FINDINGS if any(d.severity == "error" for d in b.diagnostics) else OK)
