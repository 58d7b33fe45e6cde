"""What an extension module provides, and the registry that finds it by name.

Each module in this package defines one iptables extension (or a match and its
same-named target, e.g. mark/MARK) as an `Extension` subclass instance passed to
`register`. The rule parser hands it options one at a time (`parse`, reading each
word with the option's `type`), then asks for the finished, immutable value
(`complete`: the `required` options, then `finish`), and the renderer asks for its
canonical iptables-save words (`save`), the simulator whether it holds / what it does
(`holds`, `act`), and the nftables back end for its translation (`nft`, or the reason in
`nft_refusal` why nft cannot say the same).
A match also states the packets it admits symbolically (`constraint`), or declares why no
analyser can (`undecidable`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from ..model import VERDICTS, Family
from ..model.diagnostics import ParseError
from ..model.nft import Ctx as NftCtx
from ..model.nft import Part
from ..model.space import AnyOf, Box, Frame
from .opaque import UNMODELLED_CONNTRACK, UNMODELLED_LOGS, UNMODELLED_NON_TERMINAL, UNMODELLED_TERMINAL


@dataclass(frozen=True)
class Option:
    name: str  # canonical spelling, e.g. "--dport"
    aliases: tuple[str, ...] = ()
    nargs: int = 1  # words the option consumes: 0, 1 or 2
    invertible: bool = False
    optional_arg: bool = False  # one argument that may be absent (next word starts with "-")
    type: Callable[[str], Any] | None = None  # reads the option's one word into its value (raises ParseError)
    required: bool = False  # the extension cannot do without it
    hint: str | None = None  # how to write it, shown when it is missing

    @cached_property  # asked for every option of every rule read
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
    nft_refusal: ClassVar[str | None] = None  # declared: why nftables cannot express it at all
    terminal: ClassVar[bool | None] = None  # a target: does it end the packet's traversal? (declared by each)
    conntrack: ClassVar[bool] = False  # a rule using it makes the kernel load conntrack (and defragmentation)
    stateful: ClassVar[bool] = False  # keeps state between packets, in Simulator.memory under (name, ...)
    logs: ClassVar[bool] = False  # a target that only logs: it never changes the packet or its fate
    # Its outcome (and what it notes) is the same for every packet of a class: it reads the packet only
    # through its fields and the walk's own state (conntrack state, notes), keeps nothing between packets,
    # notes nothing that names the packet, and a match reads addresses and ports only as its constraint
    # says. explain's batch answers such packets once per class (semantics/classes.py).
    classwise: ClassVar[bool] = False
    # Rules (the words after `-A INPUT`, filter table) that iptables-restore loads and iptables-save prints
    # back as stockade does: tests/kernel/test_roundtrip.py runs them, as iptables runs libxt_NAME.t.
    roundtrip: ClassVar[tuple[str, ...]] = ()
    # A match no dimension of model.space expresses: why. Declared, so that a match that forgot its
    # constraint is told apart (tests/test_constraints.py).
    undecidable: ClassVar[str | None] = None

    def option(self, word: str) -> Option | None:
        return self.spellings.get(word)

    @cached_property
    def spellings(self) -> dict[str, Option]:
        """Each option by its name and aliases (the first option to claim a word keeps it), made once:
        the rule parser looks up every option word it reads."""
        table: dict[str, Option] = {}
        for opt in self.options:
            for word in (opt.name, *opt.aliases):
                table.setdefault(word, opt)
        return table

    def parse(self, acc: dict[str, Any], opt: Option, invert: bool, args: list[str], ctx: Context) -> None:
        """Record one option into `acc`; the default rejects repeats and stores (invert, args)."""
        if opt.key in acc:
            raise ParseError(f"{self.name}: {opt.name} given twice", code="duplicate-option")
        if invert and not opt.invertible:
            raise ParseError(f"{self.name}: {opt.name} cannot be inverted with `!`", code="bad-invert")
        acc[opt.key] = (invert, self.convert(opt, args, ctx))

    def convert(self, opt: Option, args: list[str], ctx: Context) -> Any:
        """Turn an option's words into a value (by default its `type`); raise ParseError for bad ones."""
        if opt.type is not None:
            return opt.type(args[0])
        return args[0] if len(args) == 1 else tuple(args)

    @cached_property
    def required_options(self) -> tuple[Option, ...]:
        """The options `complete` insists on, in order (asked for every match and target read)."""
        return tuple(opt for opt in self.options if opt.required)

    def complete(self, acc: dict[str, Any], ctx: Context) -> Any:
        """What the parser calls once every option is in: the required ones must be, then `finish`."""
        for opt in self.required_options:
            if opt.key not in acc:
                raise ParseError(f"{self.name}: {opt.name} is required", code="missing-option", hint=opt.hint)
        return self.finish(acc, ctx)

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

    def shares_state(self, data: Any, family: Family) -> bool:
        """A stateful match: do packets from different sources share its state (one bucket for all)?"""
        return self.stateful

    def nft(self, data: Any, ctx: NftCtx) -> list[Part] | str | None:
        """A match: its nft expressions; a target: its nft statement (None: it adds none).

        Raises NftError (`ctx.fail`) for what nft cannot express with the same meaning. An extension
        either overrides this or declares `nft_refusal`; tests/test_extension_registry.py checks."""
        raise ctx.fail(self.nft_refusal or f"{'-m' if self.kind == 'match' else '-j'} {self.name} has no "
                       "nftables translation in stockade")


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

    def terminal(self, name: str, family: Family) -> bool | None:
        """Does `-j NAME` end the packet's traversal? The built-in verdicts but RETURN do; an extension
        says so itself; of an unmodelled one, what its kernel module does; None: not known."""
        if name in VERDICTS:
            return name != "RETURN"
        ext = self.find("target", name, family)
        if ext is not None:
            return ext.terminal
        return True if name in UNMODELLED_TERMINAL else False if name in UNMODELLED_NON_TERMINAL else None

    def loads_conntrack(self, kind: str, name: str, family: Family) -> bool:
        """Does a rule with this match or target make the kernel load conntrack?"""
        ext = self.find(kind, name, family)
        return ext.conntrack if ext is not None else name in UNMODELLED_CONNTRACK

    def logs(self, name: str, family: Family) -> bool:
        """Is `-j NAME` a target that only logs?"""
        ext = self.find("target", name, family)
        return ext.logs if ext is not None else name in UNMODELLED_LOGS

    def stateful(self) -> frozenset[str]:
        """The names of the matches that keep state between packets."""
        return frozenset(n for n, exts in self.matches.items() if any(e.stateful for e in exts))


REGISTRY = Registry()


def register(cls: type[Extension]) -> type[Extension]:
    """Class decorator: make an extension known to the parser and renderers."""
    REGISTRY.add(cls())
    return cls
