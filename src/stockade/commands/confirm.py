"""`stockade confirm`: keep the ruleset the last apply made live."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import alarms, kernel_step


@click.command("confirm")
@options.NETNS
@options.as_json()
def command(netns: str | None, as_json: bool) -> None:
    """Keep the ruleset the last apply made live (stops its rollback timer)."""
    from ..kernel.apply import confirm

    out = kernel_step(confirm, netns, as_json=as_json)
    note = f" ({out['note']})" if out["note"] else ""
    click.echo(json.dumps(out) if as_json else f"confirmed {out['confirmed']}{note}")
    alarms(netns)
