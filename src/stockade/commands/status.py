"""`stockade status`: the live ruleset against what stockade applied."""
from __future__ import annotations

import json
import sys

import click

from . import options
from .exitcodes import FINDINGS
from .kernelstep import kernel_step


@click.command("status")
@options.NETNS
@options.as_json()
def command(netns: str | None, as_json: bool) -> None:
    """The live ruleset with counters per policy line, versions, drift and other tools' rules."""
    from ..kernel.status import status, status_text

    out = kernel_step(status, netns, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else status_text(out), nl=as_json)
    if out["alarms"]:
        sys.exit(FINDINGS)
