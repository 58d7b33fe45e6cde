"""The one place a command reads a file: bytes to text (no NUL bytes, UTF-8 with the position of the
first bad byte), the kind of input it holds, and the library call that loads each kind.

Unreadable input raises InputError (exit 2); defects inside a readable file are the loaders' own
diagnostics and errors (PolicyError, parse diagnostics).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import NUL_NAME
from ..model import Family, Ruleset
from ..model.diagnostics import Diagnostic, StockadeError
from ..parse.command import Builder
from ..parse.read import BOM, Unreadable, decode, guess_format, read
from ..parse.script import Invocation

if TYPE_CHECKING:
    from ..model.nftables import NftRuleset
    from ..policy.compile import CompiledPolicy


class InputError(StockadeError):
    """A file that cannot be read at all; printed as `file: error: cannot read ...` (bytes that are not
    text are parse.read.Unreadable, with their line and column)."""

    code = "unreadable"

    def __init__(self, path: str, reason: str, what: str = "input"):
        super().__init__(f"cannot read {what}: {reason}")
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: error: {self.message}"


def read_bytes(path: str, what: str = "input") -> bytes:
    """The file's bytes (a FIFO from `<(...)` too); InputError if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except ValueError:
        raise InputError(path, NUL_NAME, what) from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e), what) from None


def read_text(path: str, what: str = "input") -> str:
    """The file's text; InputError if it cannot be read, Unreadable if it holds NUL bytes or is not UTF-8."""
    return decode(read_bytes(path, what), path)


# The kinds of input, most specific first: the first row whose test fits the file names its kind.
KINDS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("policy", lambda path, _text: path.endswith(".toml")),
    ("save", lambda _path, text: guess_format(text) == "save"),  # iptables-save / iptables-restore input
    ("script", lambda _path, _text: True),  # a shell script or pasted tutorial of iptables commands
)


def kind_of(path: str, text: str) -> str:
    return next(kind for kind, fits in KINDS if fits(path, text))


def load_ruleset(path: str, fmt: str = "auto", family: Family | None = None,
                 how: Invocation | None = None) -> tuple[Builder, str]:
    """An iptables-save dump or script (`fmt`: auto, save or script; `how` a script's arguments and
    environment), with its text."""
    text = read_text(path)
    return read(text, path, fmt, family, how), text


def load_nft(path: str, text: str | None = None) -> NftRuleset:
    """An nftables ruleset: nft JSON (`nft -j list ruleset`) as it is, an nft text file through the real
    nft in a throwaway namespace (kernel/nftfile.py: needs root and nft; its rules then carry handles,
    not lines)."""
    from ..parse.nft import is_json, read_nft_json

    text = read_text(path) if text is None else text
    if is_json(text.removeprefix(BOM)):
        return read_nft_json(text.removeprefix(BOM), path)
    from ..kernel.nftfile import nft_json_of_file

    return read_nft_json(nft_json_of_file(path), path, positions=False)


def load_policy(path: str, text: str | None = None) -> CompiledPolicy:
    """A policy (read unless its text is given), compiled; PolicyError with positioned diagnostics."""
    from ..policy.compile import compile_policy  # pydantic only when needed

    return compile_policy(path, read_text(path) if text is None else text)


def load_rulesets(path: str, how: Invocation | None = None,
                  text: str | None = None) -> tuple[dict[Family, Ruleset], list[Diagnostic]]:
    """The rulesets of any input kind (a policy compiled, a dump or script read), with its diagnostics."""
    text = read_text(path) if text is None else text
    if kind_of(path, text) == "policy":
        c = load_policy(path, text)
        return c.rulesets, c.diagnostics
    b = read(text, path, how=how)
    errors = [d for d in b.diagnostics if d.severity == "error"]
    if errors and kind_of(path, text.removeprefix(BOM)) == "save":
        raise Unreadable(*errors)  # iptables-restore would load none of it; a script's bad lines fail alone
    return b.rulesets, b.diagnostics


def load_any(path: str, fmt: str = "auto",
             how: Invocation | None = None) -> tuple[dict[Family, Ruleset] | NftRuleset, list[Diagnostic]]:
    """Any input the truth commands (diff, analyze, lint) read: nftables (`fmt` nft, or content
    parse/nft.py recognises) as an NftRuleset, anything else as load_rulesets reads it."""
    from ..parse.nft import looks_like_nft

    text = read_text(path)
    if fmt == "nft" or (fmt == "auto" and kind_of(path, text) != "policy" and looks_like_nft(text.removeprefix(BOM))):
        return load_nft(path, text), []
    return load_rulesets(path, how, text)
