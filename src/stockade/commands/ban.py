"""`stockade ban ADDRESS [--timeout S]`: one element in the policy's ban set (fail2ban's action calls it)."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import kernel_step


@click.command("ban")
@click.argument("address")
@click.option("--timeout", type=int, help="seconds (default: the policy's [bans] timeout; -1: as long as a set allows)")
@options.NETNS
@options.as_json()
def command(address: str, timeout: int | None, netns: str | None, as_json: bool) -> None:
    """Ban ADDRESS: one element of the ban set, expiring after its timeout; kept across applies."""
    from ..kernel.bans import ban

    out = kernel_step(ban, netns, address, timeout, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else f"banned {out['banned']} in {out['set']}"
               + (f" for {out['timeout']} s" if out["timeout"] else ""))
