"""`stockade unban ADDRESS`: the address leaves the ban set (fail2ban's action calls it)."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import kernel_step


@click.command("unban")
@click.argument("address")
@options.NETNS
@options.as_json()
def command(address: str, netns: str | None, as_json: bool) -> None:
    """Lift the ban of ADDRESS (no error if it was not banned)."""
    from ..kernel.bans import unban

    out = kernel_step(unban, netns, address, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else
               f"{out['unbanned']} {'unbanned' if out['was_banned'] else 'was not banned'} ({out['set']})")
