"""How a deliberate error reaches the user: its positioned form or `stockade: error:` with the hint,
then the exit status exitcodes assigns it. Anything that is not a StockadeError is a bug and stays
a traceback."""
from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..files import WriteError
from ..model.diagnostics import DiagnosedError, StockadeError
from .exitcodes import for_error
from .inputs import InputError


def fail(e: StockadeError) -> NoReturn:
    if isinstance(e, (DiagnosedError, InputError)):
        click.echo(str(e), err=True)
    elif isinstance(e, WriteError):
        click.echo(f"{e.path}: error: cannot write: {e.reason}", err=True)
    else:
        click.echo(f"stockade: error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
    sys.exit(for_error(e))
