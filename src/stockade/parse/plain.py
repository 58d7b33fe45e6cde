"""A dump's rule lines as plain words: the shapes iptables-save prints, read without RuleParser's walk.

A 200,000-rule dump spent most of its time making a Token (word and position) per word and walking
RuleParser's getopt loop, and a dump repeats the same match text thousands of times (`-m state
--state NEW`, `-j REJECT --reject-with tcp-reset`). `PlainRules.rule` reads the words of one rule
(strings, no positions) and returns the Rule RuleParser would make of them, or None for anything
but a well-formed rule with its target last: options of no extension loaded by then (an implicit
`-p tcp --dport`), `--opt=value`, prefixes, `-c`, several addresses in one `-s`, a jump to a missing
chain, an unknown extension, any error. (A `-p` after a match is read as RuleParser reads it: each
match parsed with the protocol given before it and completed with the rule's.) The caller then reads the line with
RuleParser, which finds and positions the defect, so diagnostics come from one place only.

Each extension's option group (`-m tcp --dport 22`, `-j LOG --log-prefix x`) is parsed once per
context by the extension itself (parse, complete), and its finished Match or Target is shared by
every rule that writes the same words: both are frozen, and a value that cannot be hashed is not
shared (that group then takes RuleParser's path). Addresses, interfaces and protocols are read once
per spelling alike. The tables live as long as one reading of a dump.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..extensions import REGISTRY, Context, Extension
from ..extensions.values import parse_proto
from ..model import BUILTIN_CHAINS, VERDICTS, AddrMatch, Counters, Family, Match, Origin, Proto, Rule, Table, Target
from ..model.address import parse_address
from ..model.diagnostics import ParseError, Token
from ..model.netfilter import BUILTIN_HOOKS
from .command import chain_loop
from .rule import CORE, NO_IFACE, interface

# The options read here but -m: each may be given once (RuleParser's `seen`); -c, -4 and -6 are left to it.
_ONCE = {core: 1 << k for k, core in enumerate(("src", "dst", "iif", "oif", "proto", "frag", "jump", "goto"))}
_MISS = object()  # not in a table yet
_BAD = object()  # RuleParser must read it (an error, or a case read here not at all)


def _group_end(ext: Extension, words: Sequence[str], j: int, others: Sequence[Extension] = ()) -> int:
    """Where the options of `ext` that start at `words[j]` end (the next core option, or the end), as
    RuleParser hands them out: each option with its arguments, `!` before it. -1 if a word there is
    not exactly an option of `ext` (or is one of an extension in `others`, which RuleParser asks first)."""
    spell, n = ext.spellings, len(words)
    while j < n:
        k = j + 1 if words[j] == "!" else j
        if k >= n:
            return -1
        w = words[k]
        if w in CORE:
            return j
        opt = spell.get(w)
        if opt is None or (others and any(e.option(w) for e in others)):
            return -1
        nargs = opt.nargs
        if opt.optional_arg:
            nargs = 1 if k + 1 < n and not words[k + 1].startswith("-") else 0
        j = k + 1 + nargs
        if j > n:
            return -1
    return j


class _Groups(dict):
    """Finished Matches and Targets by their words (`NAME OPTIONS...`), all read in one `context`: table,
    chain, the protocol when read and whether inverted, and the rule's protocol and whether inverted."""

    __slots__ = ("context", "ctx")

    def __init__(self, context: tuple[str, str, int | None, bool, int | None, bool], ctx: Context):
        super().__init__()
        self.context = context
        self.ctx = ctx  # what an extension reads while parsing: its protocol fields set anew for each


class PlainRules:
    """The rules of one family's dump read from plain words, with the tables that make repeats cheap."""

    def __init__(self, family: Family, known_sets: frozenset[str] | None):
        self.family = family
        self.known_sets = known_sets
        # header values by their word, without and with `!`
        self._addrs: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._ifaces: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._protos: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._matches: dict[str, Extension | None] = {}
        self._targets: dict[str, Extension | None] = {}
        self._groups: dict[tuple, _Groups] = {}  # by their context
        self._shares: dict[Extension, bool] = {}  # a target with an option spelled as some match's option
        self._jumps: tuple[dict[str, Target], dict[str, Target]] = ({}, {})  # -j, -g of a verdict or chain

    def rule(self, table: Table, chain: str, words: Sequence[str], start: int, origin: Origin,
             counters: Counters | None, late: bool = False) -> Rule | None:
        """The rule `words[start:]` (what follows `-A CHAIN`) make in `chain` of `table`, as RuleParser would
        read it; None: let RuleParser read it. `late`: a `-p` follows a match, which was read without it."""
        n = len(words)
        src = dst = iif = oif = proto = frag = target = groups = None
        pnum, pinv = None, False
        matches: list[Any] = []  # Matches; with `late`, (extension, start, end, protocol then, inverted)
        exts: list[Extension] = []
        seen = 0  # the header options read (_ONCE)
        inv = False
        i = start
        while i < n:
            w = words[i]
            if w == "!":
                if inv:
                    return None
                inv = True
                i += 1
                continue
            core = CORE.get(w)
            if core == "match":
                if inv or i + 1 >= n:
                    return None
                ext = self._matches.get(words[i + 1], _MISS)
                if ext is _MISS:
                    ext = self._matches[words[i + 1]] = REGISTRY.find("match", words[i + 1], self.family)
                if ext is None:
                    return None
                j = i + 2
                while j < n and words[j] not in CORE:
                    j += 1
                if late:
                    matches.append((ext, i + 1, j, pnum, pinv))
                else:
                    if groups is None:
                        groups = self._context(table.name, chain, pnum, pinv, pnum, pinv)
                    key = tuple(words[i + 1:j])
                    got = groups.get(key, _MISS)
                    if got is _MISS:
                        got = self._group(groups, ext, key)
                    if got is _BAD:
                        return None
                    matches.append(got)
                exts.append(ext)
                i = j
                continue
            bit = _ONCE.get(core, 0)  # type: ignore[arg-type]
            if not bit or seen & bit:
                return None  # an unknown option or one given twice: RuleParser says which
            seen |= bit
            if core == "frag":
                if self.family is Family.IPV6:
                    return None
                frag, inv = not inv, False
                i += 1
                continue
            if i + 1 >= n:
                return None
            arg = words[i + 1]
            if core == "src" or core == "dst":
                got = self._addrs[inv].get(arg, _MISS)
                if got is _MISS:
                    got = self._addrs[inv][arg] = self._address(arg, inv)
                if got is _BAD:
                    return None
                if core == "src":
                    src = got
                else:
                    dst = got
            elif core == "iif" or core == "oif":
                if chain in NO_IFACE[core]:
                    return None
                got = self._ifaces[inv].get(arg, _MISS)
                if got is _MISS:
                    got = self._ifaces[inv][arg] = self._iface(arg, inv)
                if got is _BAD:
                    return None
                if core == "iif":
                    iif = got
                else:
                    oif = got
            elif core == "proto":
                if exts and not late:  # the matches so far saw no protocol, and complete with this one
                    return self.rule(table, chain, words, start, origin, counters, late=True)
                got = self._protos[inv].get(arg, _MISS)
                if got is _MISS:
                    got = self._protos[inv][arg] = self._proto(arg, inv)
                if got is _BAD:
                    return None
                pnum, proto = got
                pinv = inv
            else:  # -j, -g
                target = None if inv else self._target(table, chain, words, i + 1, core == "goto", exts, pnum, pinv)
                if target is None:
                    return None
                break  # the target ends the rule (_target made sure)
            inv = False
            i += 2
        if inv:
            return None
        if late:  # completed with the rule's protocol, as RuleParser._finish does
            done = []
            for ext, s, e, gnum, ginv in matches:
                got = self._group(self._context(table.name, chain, gnum, ginv, pnum, pinv), ext, tuple(words[s:e]))
                if got is _BAD:
                    return None
                done.append(got)
            matches = done
        return Rule(src, dst, iif, oif, proto, frag, matches, target, counters, origin)

    def _target(self, table: Table, chain: str, words: Sequence[str], i: int, goto: bool, exts: list[Extension],
                pnum: int | None, pinv: bool) -> Target | None:
        """`-j NAME ...` / `-g NAME` at `words[i]` as the rule's last words: a verdict, a user chain (that
        does not lead back to `chain`) or a target extension's option group; None otherwise."""
        name = words[i]
        user = table.chains.get(name)
        if name in VERDICTS or (user is not None and not user.builtin):
            if i + 1 != len(words) or (user is not None and chain_loop(table, name, chain)):
                return None
            got = self._jumps[goto].get(name)
            if got is None:
                got = self._jumps[goto][name] = Target(name, None, goto)
            return got
        ext = self._targets.get(name, _MISS)
        if ext is _MISS:
            ext = self._targets[name] = REGISTRY.find("target", name, self.family)
        if goto or ext is None or name in BUILTIN_CHAINS[table.name]:
            return None
        if (ext.tables and table.name not in ext.tables) or (
                ext.chains and chain in BUILTIN_HOOKS and chain not in ext.chains):
            return None
        if exts and self._shared(ext) and _group_end(ext, words, i + 1, exts) != len(words):
            return None  # an option a match loaded before also has goes to that match
        got = self._group(self._context(table.name, chain, pnum, pinv, pnum, pinv), ext, tuple(words[i:]))
        return None if got is _BAD else got

    def _context(self, table: str, chain: str, gnum: int | None, ginv: bool, pnum: int | None,
                 pinv: bool) -> _Groups:
        key = (table, chain, gnum, ginv, pnum, pinv)
        got = self._groups.get(key)
        if got is None:
            got = self._groups[key] = _Groups(key, Context(self.family, table, chain, known_sets=self.known_sets))
        return got

    def _shared(self, ext: Extension) -> bool:
        got = self._shares.get(ext)
        if got is None:
            got = self._shares[ext] = any(m.option(w) for exts in REGISTRY.matches.values() for m in exts
                                          for w in ext.spellings if self.family in m.families)
        return got

    def _group(self, groups: _Groups, ext: Extension, words: tuple[str, ...]) -> Any:
        """The finished Match or Target of `NAME OPTIONS...` (`words`) of `ext`, in the context of `groups`.
        The options run to the next core option: RuleParser hands each its arguments (`!` before it) and ends
        them at that same word if and only if `_group_end` on them alone ends with them (an option's arguments
        are taken whole, and one that may have none takes none before a word starting with `-`)."""
        got = groups.get(words, _MISS)
        if got is _MISS:
            _, _, gnum, ginv, pnum, pinv = groups.context
            ctx = groups.ctx
            ctx.proto, ctx.proto_inverted = gnum, ginv
            got = groups[words] = _BAD if _group_end(ext, words, 1) != len(words) else self._finished(
                ext, words[1:], ctx, pnum, pinv)
        return got

    @staticmethod
    def _finished(ext: Extension, words: Sequence[str], ctx: Context, pnum: int | None, pinv: bool) -> Any:
        """One extension's options read and completed as RuleParser does (`_feed`, then `_finish` once the
        rule's protocol is known)."""
        acc: dict[str, Any] = {}
        j, n = 0, len(words)
        try:
            while j < n:
                invert = words[j] == "!"
                j += invert
                opt = ext.spellings[words[j]]
                nargs = opt.nargs
                if opt.optional_arg:
                    nargs = 1 if j + 1 < n and not words[j + 1].startswith("-") else 0
                ext.parse(acc, opt, invert, [words[j + 1]] if nargs == 1 else list(words[j + 1:j + 1 + nargs]), ctx)
                j += 1 + nargs
            ctx.proto, ctx.proto_inverted = pnum, pinv
            if ext.kind == "target":
                got: Match | Target = Target(ext.name, ext.complete(acc, ctx), False)
            elif ext.proto is not None and (ctx.proto != ext.proto or ctx.proto_inverted):
                return _BAD
            else:
                got = Match(ext.name, ext.complete(acc, ctx))
        except ParseError:
            return _BAD
        try:
            hash(got)
        except TypeError:  # a value with a mutable part: each rule keeps its own, RuleParser's
            return _BAD
        return got

    def _address(self, word: str, inv: bool) -> Any:
        if "," in word:
            return _BAD  # one rule per address: RuleParser's
        try:
            addr = AddrMatch(parse_address(word, int(self.family)), inv)
        except ValueError:
            return _BAD
        return None if addr.addr.mask == 0 and not inv else addr

    @staticmethod
    def _iface(word: str, inv: bool) -> Any:
        try:
            return interface(Token(word, Origin("", 0)), inv)
        except ParseError:
            return _BAD

    @staticmethod
    def _proto(word: str, inv: bool) -> Any:
        try:
            num = parse_proto(word)
        except ParseError:
            return _BAD
        if num == 0 and inv:
            return _BAD
        return num, (Proto(num, inv) if (num or inv) else None)
