"""Options several commands share, spelled once."""
from __future__ import annotations

import click

from ..model import Family

FROM = click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto",
                    show_default=True, help="input format: iptables-save dump or shell script")
NETNS = click.option("--netns", help="network namespace to act in (default: this one)")


def as_json(help: str | None = None):
    return click.option("--json", "as_json", is_flag=True, help=help)


def family(help: str):
    """`--family 4|6`, read as a Family or None."""
    return click.option("--family", type=click.Choice(["4", "6"]), help=help,
                        callback=lambda _ctx, _param, value: Family(int(value)) if value else None)
