"""Where kernel commands run: this machine, or a named network namespace through `ip netns exec`."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ..model.diagnostics import StockadeError


class KernelError(StockadeError, RuntimeError):
    """A tool refused or failed; the message says which and what it printed."""


@dataclass(frozen=True)
class Host:
    netns: str | None = None  # None: the namespace this process runs in
    inside: str | None = None  # the name of the namespace this process already runs in (the worker's)

    @property
    def label(self) -> str:
        return self.netns or self.inside or "host"

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def run(self, argv: Sequence[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a tool (argument list, never a shell line) and wait; KernelError if it fails and `check`."""
        try:
            proc = subprocess.run(self.argv(argv), input=input, capture_output=True, text=True, check=False,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except OSError as e:
            raise KernelError(f"{argv[0]}: {e.strerror}") from None
        if check and proc.returncode != 0:
            raise KernelError(f"{' '.join(argv[:3])} failed in {self.label}: "
                              f"{(proc.stderr or proc.stdout).strip()[:2000]}")
        return proc

    def ok(self, argv: Sequence[str]) -> bool:
        try:
            return self.run(argv, check=False).returncode == 0
        except KernelError:
            return False
