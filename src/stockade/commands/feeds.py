"""`stockade feeds update`: fetch the policy's feeds and change their live sets by the difference."""
from __future__ import annotations

import json
import sys

import click

from . import options
from .exitcodes import FINDINGS
from .kernelstep import alarms, kernel_step


@click.group("feeds")
def command() -> None:
    """Blocklist feeds: groups whose members a URL or file supplies ([feeds.NAME] in the policy)."""


@command.command("update")
@click.argument("policy")
@click.argument("names", nargs=-1)
@options.NETNS
@click.option("--root", type=click.Path(file_okay=False), help="file system root whose /var/lib/stockade keeps "
              "the feeds' state (default: the state dir)")
@click.option("--force", is_flag=True, help="fetch in full, without If-None-Match/If-Modified-Since")
@options.as_json()
def update(policy: str, names: tuple[str, ...], netns: str | None, root: str | None, force: bool,
           as_json: bool) -> None:
    """Fetch each feed of POLICY (or the NAMES given), check every entry, and add and delete only what
    changed in its live sets. A feed that fails keeps its last good list (exit status 1)."""
    from ..kernel.feeds import report_text
    from ..kernel.feeds import update as run

    out = kernel_step(run, policy, netns, root, names, force, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else report_text(out), nl=as_json)
    alarms(netns)
    if any(f["error"] or f["bad_lines"] for f in out["feeds"]):
        sys.exit(FINDINGS)
