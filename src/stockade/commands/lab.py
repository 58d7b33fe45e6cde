"""`stockade lab`: a policy or ruleset proved with real packets in throwaway namespaces."""
from __future__ import annotations

import functools
import json
import sys

import click

from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Source, load


def print_report(report, as_json: bool) -> None:
    """The lab's report as a table or JSON; exit 1 on any mismatch with the prediction."""
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())
    sys.exit(FINDINGS if report.mismatches else OK)


def prove(ruleset: str | None, as_json: bool, src: Source) -> None:
    """`lab` and `audit`: read the input as every reading command does (a policy's positioned errors exit
    before any namespace exists), send the probes, and report."""
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


@click.command("lab")
@click.argument("target", required=False)
@options.as_json("machine-readable report")
@options.reading
def command(target: str | None, as_json: bool, src: Source) -> None:
    """Prove POLICY (.toml) or RULESET with real packets in throwaway namespaces; exit 1 on any mismatch."""
    prove(target, as_json, src)
