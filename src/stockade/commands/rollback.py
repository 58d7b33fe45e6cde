"""`stockade rollback`: the ruleset from before the last unconfirmed apply, back now."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import alarms, kernel_step


@click.command("rollback")
@options.NETNS
@options.as_json()
def command(netns: str | None, as_json: bool) -> None:
    """Restore the ruleset saved by the last apply, now."""
    from ..kernel.apply import rollback

    out = kernel_step(rollback, netns, as_json=as_json)
    click.echo(json.dumps(out) if as_json else f"restored {out['restored']} ({out['backend']})")
    alarms(netns)
