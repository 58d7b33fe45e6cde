"""`stockade audit`: what an imported script or dump really does to real packets."""
from __future__ import annotations

import functools

import click

from . import options
from .inputs import Source, load
from .lab import print_report


@click.command("audit")
@click.argument("ruleset", required=False)
@options.as_json("machine-readable report")
@options.reading
def command(ruleset: str | None, as_json: bool, src: Source) -> None:
    """What an imported script or dump (or a policy, or the kernel's ruleset) really does to real packets
    (lab probes, simulator predictions)."""
    from ..lab.audit import run_audit
    from ..lab.run import run_lab

    got = load(ruleset, src)
    for d in got.builder.for_analysis():
        if d.severity != "note":
            click.echo(str(d), err=True)
    say = functools.partial(click.echo, err=True)
    families = [src.family] if src.family else None
    if got.policy is not None:
        report = run_lab(got.policy, got.name, say, families)
    else:
        report, _ = run_audit(got.name, got.builder, say, families)
    print_report(report, as_json)
