"""`stockade lab`: a policy or ruleset proved with real packets in throwaway namespaces."""
from __future__ import annotations

import functools
import json
import sys

import click

from ..model import Family
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import load


def print_report(report, as_json: bool) -> None:
    """The lab's report as a table or JSON; exit 1 on any mismatch with the prediction."""
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())
    sys.exit(FINDINGS if report.mismatches else OK)


@click.command("lab")
@click.argument("target")
@options.as_json("machine-readable report")
@click.option("--family", type=click.Choice(["4", "6", "both"]), default="both", show_default=True)
def command(target: str, as_json: bool, family: str) -> None:
    """Prove POLICY (.toml) or RULESET with real packets in throwaway namespaces; exit 1 on any mismatch."""
    from ..lab.audit import run_audit
    from ..lab.run import run_lab

    fams = list(Family) if family == "both" else [Family(int(family))]
    say = functools.partial(click.echo, err=True)
    got = load(target)  # a policy's positioned errors: exit 1, before any namespace exists
    if got.policy is not None:
        report = run_lab(got.policy, target, say, fams)
    else:
        report, _ = run_audit(target, got.builder, say, fams)
    print_report(report, as_json)
