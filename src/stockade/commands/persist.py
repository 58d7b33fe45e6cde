"""`stockade persist`: the confirmed ruleset written where the system loads it at boot."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import alarms, kernel_step


@click.command("persist")
@options.NETNS
@click.option("--status", "show", is_flag=True, help="only say where the confirmed ruleset is persisted")
@click.option("--root", type=click.Path(file_okay=False), help="file system root to write under (default: /)")
@options.as_json()
def command(netns: str | None, show: bool, root: str | None, as_json: bool) -> None:
    """Write the confirmed ruleset where this system loads it at boot."""
    from ..kernel.persist import persist, persist_status

    out = kernel_step(persist_status if show else persist, netns, root, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else out["text"])
    alarms(netns)
