"""The `stockade` command: a click group of the commands in stockade.commands."""
from __future__ import annotations

from importlib import import_module

import click

from .commands import COMMANDS
from .commands.errors import fail
from .kernel.netns import Terminated, close_all, unwind_on_termination
from .model.diagnostics import StockadeError


class _Stockade(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Import a command's module only when it runs: each loads just the library it needs."""
        return import_module(f"{__package__}.commands.{name}").command if name in COMMANDS else None

    def invoke(self, ctx: click.Context):
        """A deliberate error is one message and an exit status, never a traceback. SIGTERM and SIGHUP
        unwind like ^C, so throwaway namespaces are deleted on the way out; the exit status is 128+N."""
        unwind_on_termination()
        try:
            return super().invoke(ctx)
        except StockadeError as e:
            fail(e)
        except Terminated as e:
            raise SystemExit(128 + e.signum) from None
        finally:
            close_all()  # what a signal left between a namespace's making and its `with` taking it


@click.group(cls=_Stockade, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """stockade: a host firewall for Linux servers that proves what it does."""


if __name__ == "__main__":
    main()
