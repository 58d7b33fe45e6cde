"""Running one kernel step for apply, confirm, rollback, repair, persist and status, and the alarms after it."""
from __future__ import annotations

import json
import sys

import click

from .exitcodes import FINDINGS


def kernel_step(fn, *args, as_json: bool = False, **kw):
    """`fn(*args, **kw)`; with --json a refusal or failure is also a JSON document on stdout before the
    error line (the caller's error handling prints it and picks the exit status)."""
    from ..kernel.apply import Refused
    from ..kernel.host import KernelError

    try:
        return fn(*args, **kw)
    except KernelError as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(e), "refused": isinstance(e, Refused),
                                   "blocked": [p.to_json() for p in getattr(e, "blocked", [])]}, indent=2))
        raise


def alarms(netns: str | None) -> None:
    """After every kernel command: a dead rollback timer or a half-done transaction is an alarm, exit 1."""
    from ..kernel.status import netns_alarms

    found = kernel_step(netns_alarms, netns)
    for a in found:
        click.echo(f"stockade: {a}", err=True)
    if found:
        sys.exit(FINDINGS)
