"""Options several commands share, spelled once."""
from __future__ import annotations

import functools
import re

import click

from ..model import Family
from ..parse.script import Invocation

FROM = click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto",
                    show_default=True, help="input format: iptables-save dump or shell script")
FROM_NFT = click.option("--from", "fmt", type=click.Choice(["auto", "save", "script", "nft"]), default="auto",
                        show_default=True, help="input format: iptables-save dump, shell script, or nftables "
                        "(`nft -j list ruleset` JSON, or an nft text file read by the real nft in a throwaway "
                        "namespace)")
NETNS = click.option("--netns", help="network namespace to act in (default: this one)")


def as_json(help: str | None = None):
    return click.option("--json", "as_json", is_flag=True, help=help)


def family(help: str):
    """`--family 4|6`, read as a Family or None."""
    return click.option("--family", type=click.Choice(["4", "6"]), help=help,
                        callback=lambda _ctx, _param, value: Family(int(value)) if value else None)


def script(fn):
    """--arg, --env and --include-path: how a script input is run (every command that reads one),
    handed to the command as `how`."""
    @functools.wraps(fn)
    def wrapper(*a, args: tuple[str, ...], env: tuple[str, ...], include_paths: tuple[str, ...], **kw):
        pairs = {}
        for item in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item, re.DOTALL):
                raise click.BadParameter(f"`{item}` is not NAME=VALUE", param_hint="--env")
            name, value = item.split("=", 1)
            pairs[name] = value
        return fn(*a, how=Invocation(list(args), pairs, list(include_paths)), **kw)

    for option in (click.option("--include-path", "include_paths", multiple=True, metavar="DIR",
                                help="where a script's `source`/`.` and read files are looked for (repeatable)"),
                   click.option("--env", "env", multiple=True, metavar="NAME=VALUE",
                                help="environment variable the script runs with (repeatable)"),
                   click.option("--arg", "args", multiple=True, metavar="WORD",
                                help="argument the script runs with, e.g. --arg start (repeatable)")):
        wrapper = option(wrapper)
    return wrapper
