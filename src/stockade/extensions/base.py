"""What an extension module provides, and the registry that finds it by name.

Each module in this package defines one iptables extension (or a match and its
same-named target, e.g. mark/MARK) as an `Extension` subclass instance passed to
`register`. The rule parser hands it options one at a time (`parse`), then asks
for the finished, immutable value (`finish`), and the renderer asks for its
canonical iptables-save words (`save`). A match also states the packets it admits
symbolically (`constraint`), or declares why no analyser can (`undecidable`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.space import AnyOf, Box, Frame


@dataclass(frozen=True)
class Option:
    name: str  # canonical spelling, e.g. "--dport"
    aliases: tuple[str, ...] = ()
    nargs: int = 1  # words the option consumes: 0, 1 or 2
    invertible: bool = False
    optional_arg: bool = False  # one argument that may be absent (next word starts with "-")

    @property
    def key(self) -> str:
        return self.name.lstrip("-")


@dataclass
class Context:
    """What an extension may need to know about the rule being parsed."""

    family: Family
    table: str = "filter"
    chain: str = "INPUT"
    proto: int | None = None  # the rule's -p, once known (not inverted)
    proto_inverted: bool = False
    known_sets: frozenset[str] | None = None  # None: cannot check set names


class Extension:
    """One iptables extension: a match (`-m name`) or a target (`-j NAME`)."""

    name: ClassVar[str]
    kind: ClassVar[str] = "match"  # or "target"
    families: ClassVar[frozenset[Family]] = frozenset((Family.IPV4, Family.IPV6))
    options: ClassVar[tuple[Option, ...]] = ()
    proto: ClassVar[int | None] = None  # the -p the kernel insists on (tcp, udp, icmp, ...)
    tables: ClassVar[tuple[str, ...] | None] = None  # tables a target is valid in
    chains: ClassVar[tuple[str, ...] | None] = None  # built-in chains it is valid from
    # A match no dimension of model.space expresses: why. Declared, so that a match that forgot its
    # constraint is told apart (tests/test_constraints.py).
    undecidable: ClassVar[str | None] = None

    def option(self, word: str) -> Option | None:
        for opt in self.options:
            if word == opt.name or word in opt.aliases:
                return opt
        return None

    def parse(self, acc: dict[str, Any], opt: Option, invert: bool, args: list[str], ctx: Context) -> None:
        """Record one option into `acc`; the default rejects repeats and stores (invert, args)."""
        if opt.key in acc:
            raise ParseError(f"{self.name}: {opt.name} given twice", code="duplicate-option")
        if invert and not opt.invertible:
            raise ParseError(f"{self.name}: {opt.name} cannot be inverted with `!`", code="bad-invert")
        acc[opt.key] = (invert, self.convert(opt, args, ctx))

    def convert(self, opt: Option, args: list[str], ctx: Context) -> Any:
        """Turn an option's words into a value; raise ParseError for bad ones."""
        return args[0] if len(args) == 1 else tuple(args)

    def finish(self, acc: dict[str, Any], ctx: Context) -> Any:
        """Check the whole option set and return the immutable value the model keeps."""
        raise NotImplementedError

    def save(self, data: Any) -> list[str]:
        """The words iptables-save prints after `-m name` / `-j NAME`."""
        raise NotImplementedError

    def holds(self, data: Any, pkt: Any, env: Any) -> bool | None:
        """A match: does it hold for this packet (semantics.simulate.Env has state and memory)?

        None means stockade cannot decide, and the simulator says which rule that leaves open.
        """
        return None

    def constraint(self, data: Any, frame: Frame) -> Box | AnyOf | None:
        """A match: the packets it admits as a Box over model.space's dimensions, the one symbolic
        reading diff, findings and analyze share. None where this data is no box in `frame` (the
        analysers then leave the test undecided). Only matches not declared `undecidable` define it."""
        raise NotImplementedError(f"-m {self.name} declares neither a constraint nor `undecidable`")

    def act(self, data: Any, pkt: Any, env: Any) -> str | None:
        """A target: the verdict that ends traversal, None to go on, "UNKNOWN" if not modelled."""
        return "UNKNOWN"


@dataclass
class Registry:
    matches: dict[str, list[Extension]] = field(default_factory=dict)
    targets: dict[str, list[Extension]] = field(default_factory=dict)

    def add(self, ext: Extension) -> Extension:
        table = self.matches if ext.kind == "match" else self.targets
        table.setdefault(ext.name, []).append(ext)
        return ext

    def find(self, kind: str, name: str, family: Family) -> Extension | None:
        table = self.matches if kind == "match" else self.targets
        for ext in table.get(name, ()):
            if family in ext.families:
                return ext
        return None


REGISTRY = Registry()


def register(cls: type[Extension]) -> type[Extension]:
    """Class decorator: make an extension known to the parser and renderers."""
    REGISTRY.add(cls())
    return cls
