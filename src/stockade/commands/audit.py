"""`stockade audit`: what an imported script or dump really does to real packets."""
from __future__ import annotations

import click

from ..parse.script import Invocation
from . import options
from .inputs import load_ruleset
from .lab import print_report


@click.command("audit")
@click.argument("ruleset")
@options.as_json("machine-readable report")
@options.script
def command(ruleset: str, as_json: bool, how: Invocation) -> None:
    """What an imported script or dump really does to real packets (lab probes, simulator predictions)."""
    from ..lab.audit import run_audit

    b, text = load_ruleset(ruleset, how=how)
    for d in b.for_analysis():
        if d.severity != "note":
            click.echo(str(d), err=True)
    report, _ = run_audit(ruleset, text, lambda m: click.echo(m, err=True), how=how)
    print_report(report, as_json)
