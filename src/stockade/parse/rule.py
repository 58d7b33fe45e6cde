"""The words of one rule (what follows `-A CHAIN`) into model Rules, as iptables parses them.

iptables parses with getopt across every loaded extension, so option order is
free: `-m tcp --dport 1 -p tcp` is legal, and an option no loaded match owns
makes iptables load the match named after the rule's protocol (`-p tcp --dport
22` gets an implicit `-m tcp` at that point). We walk the words once in order,
doing the same, and stop at the first defect the real tool would refuse.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..extensions import REGISTRY, Context, Extension, Opaque, Option, Unread
from ..extensions.opaque import XTABLES_TARGETS
from ..extensions.values import parse_decimal, parse_proto
from ..model import BUILTIN_CHAINS, VERDICTS, AddrMatch, Counters, Family, Iface, Match, Origin, Proto, Rule, Target
from ..model.address import parse_address
from ..model.diagnostics import Diagnostic, ParseError, Token
from ..model.netfilter import BUILTIN_HOOKS, proto_name
from .dashes import dash_defect

CORE = {
    "-s": "src", "--source": "src", "--src": "src",
    "-d": "dst", "--destination": "dst", "--dst": "dst",
    "-i": "iif", "--in-interface": "iif",
    "-o": "oif", "--out-interface": "oif",
    "-p": "proto", "--protocol": "proto",
    "-f": "frag", "--fragment": "frag",
    "-m": "match", "--match": "match",
    "-j": "jump", "--jump": "jump",
    "-g": "goto", "--goto": "goto",
    "-c": "counters", "--set-counters": "counters",
    "-4": "ipv4", "--ipv4": "ipv4", "-6": "ipv6", "--ipv6": "ipv6",
}
TAKES_ARG = {"src", "dst", "iif", "oif", "proto", "match", "jump", "goto", "counters"}
# The match iptables loads implicitly for `-p NAME` when an option needs it.
IMPLICIT = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp", 136: "udplite"}
IMPLICIT_BY_FAMILY = {Family.IPV4: {1: "icmp"}, Family.IPV6: {58: "icmp6"}}
IFNAMSIZ = 16
NO_IFACE = {"iif": ("OUTPUT", "POSTROUTING"), "oif": ("INPUT", "PREROUTING")}


@dataclass
class _Loaded:
    """An extension instance while its options are being collected."""

    ext: Extension | None  # None: unknown extension, kept as opaque words
    name: str
    token: Token
    acc: dict[str, Any] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # its words as written, `-m NAME` first
    unread: ParseError | None = None  # a value stockade cannot read (RuleParser.lenient)


def _split(tok: Token) -> list[Token] | None:
    """`--opt=value` and glued short core options (`-ptcp`) as separate words; None if it is one word."""
    t = tok.text
    if t.startswith("--") and "=" in t:
        name, _, value = t.partition("=")
        return [Token(name, tok.origin), Token(value, tok.origin)]
    if len(t) > 2 and t[0] == "-" and t[1] != "-" and CORE.get(t[:2]) in TAKES_ARG:
        return [Token(t[:2], tok.origin), Token(t[2:], tok.origin)]
    return None


def _all_options() -> dict[str, list[Extension]]:
    owners: dict[str, list[Extension]] = {}
    for exts in itertools.chain(REGISTRY.matches.values(), REGISTRY.targets.values()):
        for ext in exts:
            for opt in ext.options:
                for word in (opt.name, *opt.aliases):
                    owners.setdefault(word, []).append(ext)
    return owners


def _unknown_option(tok: Token, ctx: Context) -> ParseError:
    word = tok.text
    owners = _all_options().get(word, [])
    if owners:
        names = sorted({e.name for e in owners if ctx.family in e.families} or {e.name for e in owners})
        protos = sorted({proto_name(e.proto) for e in owners if e.proto is not None and e.name in names})
        if protos:
            need = " or ".join(f"`-p {p}`" for p in protos)
            return ParseError(f"option {word} needs a protocol: it belongs to the {'/'.join(names)} match",
                              hint=f"add {need} before {word}", code="option-needs-module", token=tok)
        if len(names) == 1 and REGISTRY.find("target", names[0], ctx.family):
            return ParseError(f"option {word} belongs to target {names[0]}, which this rule does not use",
                              hint=f"add `-j {names[0]}`", code="option-needs-module", token=tok)
        return ParseError(f"option {word} needs `-m {names[0]}`",
                          hint=f"add `-m {names[0]}` before {word}", code="option-needs-module", token=tok)
    close = difflib.get_close_matches(word, list(_all_options()) + list(CORE), n=1)
    hint = f"did you mean `{close[0]}`?" if close else "see `iptables -h` and `iptables -m MODULE -h`"
    return ParseError(f"unknown option `{word}`", hint=hint, code="unknown-option", token=tok)


def interface(tok: Token, invert: bool) -> Iface | None:
    name = tok.text
    if len(name) >= IFNAMSIZ:
        raise ParseError(f"interface name `{name}` is longer than {IFNAMSIZ - 1} characters",
                         code="bad-interface", token=tok)
    if not name or any(c in name for c in " /\t") or name in (".", ".."):
        raise ParseError(f"`{name}` is not a valid interface name", code="bad-interface", token=tok)
    if name == "+" and not invert:
        return None  # `-i +` matches every interface and is not kept
    return Iface(name, invert)


# A value blanked before a file was shared (`XX:XX:XX:XX:XX:XX`, `x.x.x.x`, `<IP>`, `***`, `YOUR_IP`).
ANONYMISED = re.compile(r"[xX]{2,}|(?:^|[.:/])[xX](?:$|[.:/])|<[^>]*>|\*{3,}|^[A-Z][A-Z0-9]*_[A-Z0-9_]+$")
PLACEHOLDER = re.compile(r"^(?:[xX]+(?:\.[xX]+){1,3}|[A-Z][A-Z0-9_]*[A-Z][A-Z0-9_]*|<[^>]*>)(?:/\d+)?$")


def _addresses(tok: Token, family: Family) -> list:
    out = []
    for part in tok.text.split(","):
        try:
            out.append(parse_address(part, int(family)))
        except ValueError as e:
            example = "192.0.2.10 or 198.51.100.0/24" if family is Family.IPV4 else "2001:db8::10 or 2001:db8::/64"
            if PLACEHOLDER.match(part):
                raise ParseError(f"`{part}` is a placeholder left in from a tutorial, not an address",
                                 code="placeholder", token=tok,
                                 hint=f"replace it with a real address, e.g. {example}") from None
            raise ParseError(f"{e}", code="bad-address", token=tok,
                             hint=f"iptables resolves host names only once, at load time; write an address "
                                  f"or CIDR such as {example}") from None
    return out


def _why(words: list[str], e: ParseError) -> str:
    return f"stockade cannot read `{' '.join(words)}` ({e})"


class UnknownJump(ParseError):
    """A jump or goto to a chain that does not exist (yet).

    iptables refuses the command at once; iptables-restore 1.8 (nft) refuses the
    whole table at its COMMIT line, so the restore reader reports it there.
    """


# Errors about how options are combined, not about a value: a lenient reading does not keep them.
NOT_VALUES = {"duplicate-option", "bad-invert", "missing-argument"}


class RuleParser:
    """Parses rule words for one family/table; `chains` are the user chains that exist.

    `lenient`: an option whose value cannot be read (`--mac-source XX:XX:XX:XX:XX:XX`, an address a
    dump anonymised) becomes a stand-in (extensions.opaque.Unread) for its match, target or header
    test, naming the error, instead of failing the rule; the Builder reads a rule so only after the
    strict reading failed, for the analyses."""

    def __init__(self, ctx: Context, chains: Collection[str], lenient: bool = False):
        self.ctx = ctx
        self.chains = chains
        self.lenient = lenient
        self.unread: list[Match] = []  # header tests (-s -d -i -o -p) read as stand-ins

    def parse(self, tokens: list[Token], origin: Origin, warnings: list[Diagnostic]) -> list[Rule]:
        """Return the rule(s) the words describe (`-s a,b` makes one rule per address)."""
        ctx = self.ctx
        ctx.proto, ctx.proto_inverted = None, False
        words = list(tokens)  # each split (_split) only when read as an option: getopt takes an argument whole
        seen: dict[str, Token] = {}
        srcs = dsts = [None]
        rule = Rule(origin=origin)
        loaded: list[_Loaded] = []
        target: _Loaded | None = None
        target_name: Token | None = None
        goto = False
        invert: Token | None = None
        opaque: _Loaded | None = None  # the unknown extension that takes bare words now
        i = 0

        def arg(n: int = 1) -> list[Token]:
            nonlocal i
            got = words[i + 1:i + 1 + n]
            if len(got) < n:
                raise ParseError(f"option {words[i].text} needs {n} argument{'s' * (n > 1)}",
                                 code="missing-argument", token=words[i])
            i += n
            return got

        while i < len(words):
            tok = words[i]
            w = tok.text
            if w[:1] == "-" and (parts := _split(tok)) is not None:
                words[i:i + 1] = parts
                tok = parts[0]
                w = tok.text
            if w == "!":
                if invert:
                    raise ParseError("`!` given twice", code="bad-invert", token=tok)
                invert = tok
                i += 1
                continue
            if w[:1] != "-" and (bad := dash_defect(tok)) is not None:
                raise bad
            owned = None  # (owner, option) of an extension's option
            if w.startswith("--") and w not in CORE:
                owned = self._owner(w, loaded, target)
                if owned is None and (full := self._expand(tok, loaded, target)) != w:
                    w = full
                    tok = words[i] = Token(w, tok.origin)
                    owned = None if w in CORE else self._owner(w, loaded, target)
            core = CORE.get(w)
            if core is not None:
                if core in seen and core not in ("match",):
                    raise ParseError(f"option {w} given twice in one rule", code="duplicate-option", token=tok,
                                     hint=f"first given at column {seen[core].origin.col}")
                seen[core] = tok
                inv = invert is not None
                if inv and core in ("match", "jump", "goto", "counters", "ipv4", "ipv6"):
                    raise ParseError(f"`!` cannot be used with {w}", code="bad-invert", token=invert)
                if core in ("src", "dst", "iif", "oif", "proto") and self.lenient and i + 1 < len(words):
                    if self._header_unread(tok, invert, words[i + 1], core, rule):
                        invert = None
                        i += 2
                        continue
                if core in ("src", "dst"):
                    (a,) = arg()
                    addrs = [AddrMatch(x, inv) for x in _addresses(a, ctx.family)]
                    if len(addrs) > 1 and inv:
                        raise ParseError("`!` cannot be used with several addresses", code="bad-invert", token=a)
                    addrs = [None if (x.addr.mask == 0 and not inv) else x for x in addrs]
                    if core == "src":
                        srcs = addrs
                    else:
                        dsts = addrs
                elif core in ("iif", "oif"):
                    (a,) = arg()
                    if ctx.chain in NO_IFACE[core]:
                        raise ParseError(f"can't use {w} with {ctx.chain}: the packet has no "
                                         f"{'input' if core == 'iif' else 'output'} interface there",
                                         code="wrong-chain", token=tok)
                    setattr(rule, core, interface(a, inv))
                elif core == "proto":
                    (a,) = arg()
                    try:
                        num = parse_proto(a.text)
                    except ParseError as e:
                        e.token = a
                        raise
                    if num == 0 and inv:
                        raise ParseError("`! -p all` would never match", code="bad-protocol", token=a)
                    rule.proto = Proto(num, inv) if (num or inv) else None
                    ctx.proto, ctx.proto_inverted = num, inv
                elif core == "frag":
                    if ctx.family is Family.IPV6:
                        raise ParseError("-f exists only in iptables (IPv4)", code="wrong-family", token=tok,
                                         hint="use `-m frag` with ip6tables")
                    rule.fragment = not inv
                elif core == "match":
                    (a,) = arg()
                    loaded.append(self._load_match(a))
                    if loaded[-1].ext is None:
                        warnings.append(Diagnostic(
                            "warning", "unknown-extension", f"match `{a.text}` is unknown to stockade; kept verbatim",
                            a.origin, "analyses treat it as \"may match\" and say which rule depends on it"))
                elif core in ("jump", "goto"):
                    (a,) = arg()
                    target_name, goto = a, core == "goto"
                    target = self._load_target(a, goto)
                    if target is not None and target.ext is None:
                        warnings.append(Diagnostic(
                            "warning", "unknown-extension",
                            f"target `{a.text}` is an iptables extension stockade does not model; kept verbatim",
                            a.origin, "analyses say UNKNOWN for packets that reach it, naming this rule"))
                elif core == "counters":
                    (a,) = arg()
                    rule.counters = self._counters(a, words, i)
                    if "," not in a.text:
                        i += 1
                invert = None
                opaque = loaded[-1] if core == "match" and loaded[-1].ext is None else (
                    target if core in ("jump", "goto") and target is not None and target.ext is None else None)
                i += 1
                continue
            if w.startswith("-") and len(w) > 1:
                if owned is None and not w.startswith("--"):
                    owned = self._owner(w, loaded, target)
                if owned is None:
                    raise _unknown_option(tok, ctx)
                owner, opt = owned
                opaque = owner if owner.ext is None else None
                i += self._feed(owner, opt, tok, invert, words, i)
                invert = None
                continue
            if opaque is not None:  # an argument of the unknown extension's last option
                opaque.words.append(w)
                i += 1
                continue
            raise ParseError(f"unexpected word `{w}`", code="stray-word", token=tok,
                             hint="every option starts with `-`; quote arguments that contain spaces")
        if invert:
            raise ParseError("`!` at the end of the rule negates nothing", code="bad-invert", token=invert)

        rule.matches = [self._finish(m) for m in loaded] + self.unread
        if target is not None:
            rule.target = self._finish_target(target, goto)
        elif target_name is not None:
            rule.target = Target(target_name.text, None, goto)
        if len(srcs) == len(dsts) == 1:
            rule.src, rule.dst = srcs[0], dsts[0]
            return [rule]
        return [self._copy(rule, s, d) for s in srcs for d in dsts]

    # -- helpers -------------------------------------------------------------------------------

    def _header_unread(self, opt: Token, invert: Token | None, value: Token, core: str, rule: Rule) -> bool:
        """Whether a header test's value is unreadable: then it is kept as a stand-in match."""
        probe = RuleParser(dataclasses.replace(self.ctx), self.chains)
        try:
            probe.parse([*([invert] if invert else []), opt, value], rule.origin or Origin("", 0), [])
        except UnknownJump:
            return False
        except ParseError as e:
            if e.code in NOT_VALUES or (e.token is not None and e.token is not value):
                return False
            words = (["!"] if invert else []) + [opt.text, value.text]
            self.unread.append(Match(opt.text, Unread(tuple(words), _why(words, e))))
            if core == "proto":
                self.ctx.proto, self.ctx.proto_inverted = None, True  # no implicit match: the protocol is unknown
            return True
        return False

    def _load_match(self, tok: Token) -> _Loaded:
        name = tok.text
        ext = REGISTRY.find("match", name, self.ctx.family)
        if ext is None:
            other = Family.IPV6 if self.ctx.family is Family.IPV4 else Family.IPV4
            if REGISTRY.find("match", name, other) is not None:
                raise ParseError(f"match `{name}` is {other.cmd}-only", code="wrong-family", token=tok,
                                 hint={"icmp": "use `-m icmp6 --icmpv6-type` with ip6tables",
                                       "icmp6": "use `-m icmp --icmp-type` with iptables",
                                       "ttl": "use `-m hl` with ip6tables",
                                       "hl": "use `-m ttl` with iptables"}.get(name))
        return _Loaded(ext, name, tok)

    def _load_target(self, tok: Token, goto: bool) -> _Loaded | None:
        name = tok.text
        if name in VERDICTS or name in self.chains:
            return None
        if name in BUILTIN_CHAINS.get(self.ctx.table, ()):
            raise ParseError(f"a rule cannot jump to the built-in chain {name}", code="builtin-jump", token=tok,
                             hint="move the rules into a user chain and jump to that from both places")
        if goto:
            raise UnknownJump(f"goto target chain `{name}` does not exist", code="unknown-chain", token=tok,
                             hint=f"create it first with `-N {name}`")
        ext = REGISTRY.find("target", name, self.ctx.family)
        if ext is not None:
            if ext.tables and self.ctx.table not in ext.tables:
                raise ParseError(f"target {name} is only valid in the {'/'.join(ext.tables)} table",
                                 code="wrong-table", token=tok, hint=f"use `-t {ext.tables[0]}`")
            if ext.chains and self.ctx.chain in BUILTIN_HOOKS and self.ctx.chain not in ext.chains:
                raise ParseError(f"target {name} is not valid in chain {self.ctx.chain}", code="wrong-chain",
                                 token=tok, hint=f"use it from {', '.join(ext.chains)}")
            return _Loaded(ext, name, tok)
        if name in XTABLES_TARGETS:
            return _Loaded(None, name, tok)  # a target extension stockade does not know: kept verbatim
        close = difflib.get_close_matches(name, sorted(self.chains) + list(VERDICTS), n=1)
        raise UnknownJump(f"jump to chain `{name}`, which does not exist", code="unknown-chain", token=tok,
                         hint=(f"did you mean `{close[0]}`?" if close else f"create it first with `-N {name}`"))

    def _owner(self, word: str, loaded: list[_Loaded], target: _Loaded | None) -> tuple[_Loaded, Option | None] | None:
        """Who takes option `word`, and as which option: the newest loaded match that knows it (as
        iptables' merged getopt table resolves shared names), the target, the protocol's implicit match
        (loaded now), and only then an unknown extension, which keeps the words verbatim (no option)."""
        for m in reversed(loaded):
            if m.ext is not None and (opt := m.ext.option(word)) is not None:
                return m, opt
        if target is not None and target.ext is not None and (opt := target.ext.option(word)) is not None:
            return target, opt
        implicit = self._implicit(loaded)
        if implicit is not None and (opt := implicit.ext.option(word)) is not None:
            loaded.append(implicit)
            return implicit, opt
        if target is not None and target.ext is None:
            return target, None
        unknown = next((m for m in reversed(loaded) if m.ext is None), None)
        return None if unknown is None else (unknown, None)

    def _expand(self, tok: Token, loaded: list[_Loaded], target: _Loaded | None) -> str:
        """getopt_long accepts any unambiguous prefix of a long option (`--to-dest`)."""
        word = tok.text
        exts = [m.ext for m in [*loaded, target] if m is not None and m.ext is not None]
        implicit = self._implicit(loaded)
        if implicit is not None:
            exts.append(implicit.ext)
        if any(e.option(word) for e in exts) or any(m.ext is None for m in loaded) or (
                target is not None and target.ext is None):
            return word  # an exact name, or possibly an unknown extension's own option
        found = {(id(e), o.name): o.name for e in exts for o in e.options
                 for name in (o.name, *o.aliases) if name.startswith(word)}
        found |= {("core", CORE[name]): name for name in CORE if name.startswith(word) and name.startswith("--")}
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise ParseError(f"option {word} is ambiguous: {', '.join(sorted(set(found.values())))}",
                             code="ambiguous-option", token=tok)
        return word

    def _implicit(self, loaded: list[_Loaded]) -> _Loaded | None:
        ctx = self.ctx
        if ctx.proto is None or ctx.proto_inverted:
            return None
        name = IMPLICIT.get(ctx.proto) or IMPLICIT_BY_FAMILY[ctx.family].get(ctx.proto)
        ext = REGISTRY.find("match", name, ctx.family) if name else None
        if ext is None or any(m.ext is ext for m in loaded):
            return None
        return _Loaded(ext, name, Token(name, Origin("", 0)))

    def _feed(self, owner: _Loaded, opt: Option | None, tok: Token, invert: Token | None, words: list[Token],
              i: int) -> int:
        """Hand one option and its arguments to its extension; return the words consumed."""
        if owner.ext is None or opt is None:  # opaque: keep the words as written
            owner.words.extend((["!"] if invert else []) + [tok.text])
            return 1
        n = opt.nargs
        if opt.optional_arg:
            n = 1 if i + 1 < len(words) and not words[i + 1].text.startswith("-") else 0
        args = words[i + 1:i + 1 + n]
        if len(args) < n:
            raise ParseError(f"option {tok.text} needs {n} argument{'s' * (n > 1)}", code="missing-argument",
                             token=tok)
        owner.written += (["!"] if invert else []) + [tok.text] + [a.text for a in args]
        try:
            owner.ext.parse(owner.acc, opt, invert is not None, [a.text for a in args], self.ctx)
        except ParseError as e:
            e.token = e.token or (args[0] if args else tok)
            if not self.lenient or e.code in NOT_VALUES:
                raise
            owner.unread = owner.unread or e
        return 1 + n

    def _finish(self, m: _Loaded) -> Match:
        if m.ext is None:
            return Match(m.name, Opaque(tuple(m.words)))
        if m.unread is not None:
            words = ["-m", m.name, *m.written]
            return Match(m.name, Unread(tuple(words), _why(words, m.unread)))
        ext, ctx = m.ext, self.ctx
        if ext.proto is not None and (ctx.proto != ext.proto or ctx.proto_inverted):
            raise ParseError(f"the {ext.name} match needs `-p {proto_name(ext.proto)}`", code="match-needs-proto",
                             token=m.token, hint=f"add `-p {proto_name(ext.proto)}` to the rule")
        try:
            return Match(ext.name, ext.complete(m.acc, ctx))
        except ParseError as e:
            e.token = e.token or m.token
            raise

    def _finish_target(self, t: _Loaded, goto: bool) -> Target:
        if t.ext is None:
            return Target(t.name, Opaque(tuple(t.words)), goto)
        if t.unread is not None:
            words = ["-g" if goto else "-j", t.name, *t.written]
            return Target(t.name, Unread(tuple(words), _why(words, t.unread)), goto)
        try:
            return Target(t.ext.name, t.ext.complete(t.acc, self.ctx), goto)
        except ParseError as e:
            e.token = e.token or t.token
            raise

    def _counters(self, tok: Token, words: list[Token], i: int) -> Counters:
        pkts, sep, byts = tok.text.partition(",")
        if not sep:
            nxt = words[i + 1] if i + 1 < len(words) else None
            if nxt is None:
                raise ParseError("-c needs packet and byte counters", code="missing-argument", token=tok)
            byts = nxt.text
        if not pkts or not byts:
            raise ParseError(f"bad counters `{tok.text}`", hint="write -c PACKETS,BYTES", code="bad-number",
                             token=tok)
        return Counters(parse_decimal(pkts, "packet counter", 0, 2**64 - 1),
                        parse_decimal(byts, "byte counter", 0, 2**64 - 1))

    @staticmethod
    def _copy(rule: Rule, src, dst) -> Rule:
        return Rule(src, dst, rule.iif, rule.oif, rule.proto, rule.fragment, list(rule.matches), rule.target,
                    rule.counters, rule.origin)
