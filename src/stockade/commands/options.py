"""Options several commands share, spelled once."""
from __future__ import annotations

import functools
import re

import click

from ..model import Family
from ..parse.script import Invocation
from .inputs import FROM, Source

NETNS = click.option("--netns", help="network namespace to act in (default: this one)")


def as_json(help: str | None = None):
    return click.option("--json", "as_json", is_flag=True, help=help)


def family(help: str):
    """`--family 4|6`, read as a Family or None."""
    return click.option("--family", type=click.Choice(["4", "6"]), help=help,
                        callback=lambda _ctx, _param, value: Family(int(value)) if value else None)


def reading(fn):
    """--from, --family, --ipsets, --live, --netns, and a script's --arg, --env and --include-path: how
    every reading command reads its input, handed to the command as `src` (inputs.Source)."""
    @functools.wraps(fn)
    def wrapper(*a, fmt: str, family: Family | None, ipsets: str | None, live: bool, netns: str | None,
                args: tuple[str, ...], env: tuple[str, ...], include_paths: tuple[str, ...], **kw):
        pairs = {}
        for item in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item, re.DOTALL):
                raise click.BadParameter(f"`{item}` is not NAME=VALUE", param_hint="--env")
            name, value = item.split("=", 1)
            pairs[name] = value
        if live and fmt not in ("auto", "live"):
            raise click.UsageError(f"--live reads the kernel's ruleset, --from {fmt} a file: give one")
        fmt = "live" if live else fmt
        if netns is not None and fmt != "live":
            raise click.UsageError("--netns names the namespace --live reads")
        return fn(*a, src=Source(fmt, family, Invocation(list(args), pairs, list(include_paths)), ipsets, netns),
                  **kw)

    for option in (click.option("--include-path", "include_paths", multiple=True, metavar="DIR",
                                help="where a script's `source`/`.` and read files are looked for (repeatable)"),
                   click.option("--env", "env", multiple=True, metavar="NAME=VALUE",
                                help="environment variable the script runs with (repeatable)"),
                   click.option("--arg", "args", multiple=True, metavar="WORD",
                                help="argument the script runs with, e.g. --arg start (repeatable)"),
                   click.option("--netns", help="with --live: the network namespace whose ruleset is read"),
                   click.option("--live", is_flag=True, help="read the kernel's ruleset and ipsets now (no file)"),
                   click.option("--ipsets", metavar="FILE",
                                help="the sets a dump's or script's -m set rules look up (`ipset save` output)"),
                   family("keep one address family; a dump is read as this family"),
                   click.option("--from", "fmt", type=click.Choice(FROM), default="auto", show_default=True,
                                help="input kind: policy, iptables-save dump, shell script, nftables, the "
                                     "live kernel (auto: by content)")):
        wrapper = option(wrapper)
    return wrapper
