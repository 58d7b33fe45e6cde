"""`stockade repair`: undo what a killed stockade left behind, saying what it undoes."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import alarms, kernel_step


@click.command("repair")
@options.NETNS
@options.as_json()
def command(netns: str | None, as_json: bool) -> None:
    """Undo what a killed stockade left: a half-done transaction, a dead rollback timer (says what it undoes)."""
    from ..kernel.apply import repair

    out = kernel_step(repair, netns, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else out["text"], nl=as_json)
    alarms(netns)
