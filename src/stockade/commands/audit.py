"""`stockade audit`: what an imported script or dump really does to real packets."""
from __future__ import annotations

import click

from . import options
from .inputs import Source
from .lab import prove


@click.command("audit")
@click.argument("ruleset", required=False)
@options.as_json("machine-readable report")
@options.reading
def command(ruleset: str | None, as_json: bool, src: Source) -> None:
    """What an imported script or dump (or a policy, or the kernel's ruleset) really does to real packets
    (lab probes, simulator predictions)."""
    prove(ruleset, as_json, src)
