"""`stockade integrate fail2ban [--root DIR]`: installs stockade's fail2ban action as
ROOT/etc/fail2ban/action.d/stockade.conf (written atomically; ROOT is / unless given)."""
from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import click

from . import options

ACTION = "fail2ban-stockade.conf"


@click.command("integrate")
@click.argument("tool", type=click.Choice(["fail2ban"]))
@click.option("--root", type=click.Path(file_okay=False), default="/", show_default=True,
              help="install under this directory instead of /")
@options.as_json()
def command(tool: str, root: str, as_json: bool) -> None:
    """Install stockade's action for TOOL (fail2ban: action.d/stockade.conf; jails then say `action = stockade`)."""
    from ..files import WriteError, write_atomic

    target = Path(root) / "etc/fail2ban/action.d/stockade.conf"
    if not target.parent.is_dir():
        raise WriteError(target.parent, "no fail2ban configuration here: is fail2ban installed? (or give --root)")
    write_atomic(target, files("stockade.data").joinpath(ACTION).read_text(encoding="utf-8"), 0o644)
    out = {"installed": str(target), "use": "in a jail: action = stockade"}
    click.echo(json.dumps(out, indent=2) if as_json else f"installed {target}; in a jail: action = stockade")
