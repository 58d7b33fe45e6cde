"""iptables commands (-A -I -D -R -N -X -F -Z -P -E) applied to a model being built.

Both readers end here: iptables-restore lines after `*table`, and `iptables ...`
command lines of a shell script. A command the real tool would refuse leaves the
model unchanged and produces one error diagnostic, never a cascade.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..extensions import Context
from ..extensions.opaque import UNKNOWN_TARGET, XTABLES_TARGETS, Unread, stand_in, unread_match, unread_parts
from ..model import (
    BUILTIN_CHAINS,
    TABLES,
    VERDICTS,
    Chain,
    Counters,
    Family,
    IPSet,
    Origin,
    Rule,
    Ruleset,
    Table,
    Target,
)
from ..model.diagnostics import Diagnostic, ParseError, Token
from ..render.save import rule_words
from .dashes import dash_defect
from .rule import ANONYMISED, CORE, RuleParser, UnknownJump

COMMANDS = {
    "-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
    "-D": "delete", "--delete": "delete", "-R": "replace", "--replace": "replace",
    "-N": "new", "--new-chain": "new", "-X": "delete-chain", "--delete-chain": "delete-chain",
    "-F": "flush", "--flush": "flush", "-Z": "zero", "--zero": "zero", "-P": "policy", "--policy": "policy",
    "-E": "rename", "--rename-chain": "rename",
    "-L": "list", "--list": "list", "-S": "list", "--list-rules": "list", "-C": "list", "--check": "list",
}
MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1 on iptables-nft


@dataclass
class Builder:
    """Rulesets under construction, one per family, with the diagnostics found so far."""

    rulesets: dict[Family, Ruleset] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    known_sets: frozenset[str] | None = None  # ipset names that exist; None: cannot check
    sets: dict[str, IPSet] = field(default_factory=dict)  # the ipsets a script's `ipset` commands made
    # rules a script adds only if a condition stockade could not decide holds: rule origin -> script lines
    depends: dict[Origin, tuple[int, ...]] = field(default_factory=dict)
    # rules kept as stand-ins for the analyses (a value stockade cannot read: RuleParser.lenient): each
    # one's error (the kernel refuses the line) and, for a value anonymised before the file was shared
    # (the ruleset it came from was loaded), the warning the analyses show instead
    kept: list[tuple[Diagnostic, Diagnostic | None]] = field(default_factory=list)
    # read from an iptables-restore file, which the kernel loads whole or not at all: a line it refuses
    # leaves none of the file loaded (a script's refused command fails alone)
    whole: bool = False

    # what commands stockade cannot look into may have done (Builder.unknown_command): (why, origin, words)
    unknowns: list[tuple[str, Origin, tuple[str, ...]]] = field(default_factory=list)
    # built-in chains whose policy such a command may have set, until the script sets it: key -> stand-in
    unknown_policy: dict[tuple[Family, str, str], Rule] = field(default_factory=dict)
    # an absent table flushed (a bare -F) after such commands: how many of them the flush undid
    flushed: dict[tuple[Family, str], int] = field(default_factory=dict)

    def unknown_command(self, why: str, origin: Origin, words: tuple[str, ...] = ()) -> None:
        """A command that may have changed the firewall in ways stockade cannot know (a program it cannot
        look into, `eval` of text it cannot expand): from here on every built-in chain of every table the
        script has or makes starts with a stand-in that may decide any packet (extensions.opaque), and its
        policy is unknown until the script sets it. A table the script never makes is taken as absent."""
        self.unknowns.append((why, origin, words))
        for rs in self.rulesets.values():
            for table in rs.tables.values():
                self._seed(rs.family, table, why, origin, words)

    def _seed(self, family: Family, table: Table, why: str, origin: Origin, words: tuple[str, ...],
              rules: bool = True) -> None:
        for name in BUILTIN_CHAINS[table.name]:
            chain = table.chains.get(name)
            if chain is None:
                chain = table.chains[name] = Chain(name, "ACCEPT", Counters())
            if rules:
                chain.rules.insert(0, stand_in(words, why, origin, command=True))
            self.unknown_policy[(family, table.name, name)] = stand_in(
                words, f"{why}; it may have set the {name} policy", origin, command=True)

    def table_made(self, family: Family, table: Table) -> None:
        """A table the script makes after commands stockade cannot look into: they may have filled it (but
        a bare -F since then emptied what they put in its chains; their policies stay unknown)."""
        undone = self.flushed.get((family, table.name), 0)
        for n, (why, origin, words) in enumerate(self.unknowns):
            self._seed(family, table, why, origin, words, rules=n >= undone)

    def settle(self) -> None:
        """At the end of a script: a policy an unknown command may have set, and the script did not set
        after it, is a stand-in at the end of its chain."""
        for (family, table, chain), rule in self.unknown_policy.items():
            t = self.rulesets.get(family) and self.rulesets[family].tables.get(table)
            if t is not None and chain in t.chains:
                t.chains[chain].rules.append(rule)
        self.unknown_policy.clear()

    def add_unread(self, family: Family, table: Table, chain_tok: Token, cmd: str, words: list[Token],
                   unread: list[str], why: str, origin: Origin, target_unknown: bool) -> None:
        """`iptables -A/-I CHAIN` whose words stockade could only partly expand: the rule the known `words`
        make, with the `unread` ones as a match that may or may not hold (and its target unknown too when
        the unread words may hold it), at its place in the chain."""
        chain = self._chain(table, chain_tok)
        num = None
        if cmd == "insert" and words and words[0].text.isdigit():
            num, words = int(words[0].text), words[1:]
        user_chains = {n for n, c in table.chains.items() if not c.builtin}
        parser = RuleParser(Context(family, table.name, chain.name, known_sets=self.known_sets), user_chains,
                            lenient=True)
        try:
            rules = parser.parse(words, origin, [])
        except ParseError:  # what is known is not a rule on its own (`-m set --match-set $S src`)
            rules = []
        for r in rules:
            r.matches.append(unread_match(unread, why))
            if target_unknown:
                r.target = Target(UNKNOWN_TARGET, Unread((), why))
        if not rules:
            rules = [stand_in(unread, why, origin)]
            if not target_unknown and (jump := _jump(words, table)) is not None:
                rules[0].target = jump
        if num is None and cmd == "append":
            chain.rules += rules
        else:
            at = min((num or 1) - 1, len(chain.rules))
            chain.rules[at:at] = rules

    def for_analysis(self) -> list[Diagnostic]:
        """The diagnostics as the analyses (explain, analyze, diff, audit) see them: the error of a rule
        whose value was anonymised, which they keep as a stand-in, is a warning naming what they read as
        unknown (a value that is plainly wrong, `--dport 99999`, stays an error: no kernel ever loaded it)."""
        instead = {(err.origin, err.code, err.message): warn for err, warn in self.kept if warn is not None}
        return [instead.get((d.origin, d.code, d.message), d) for d in self.diagnostics]

    def loaded(self) -> dict[Family, Ruleset]:
        """The rulesets as the kernel holds them: without the rules kept as stand-ins whose lines the kernel
        refuses (`kept`); what stockade could not resolve in a script stays in, as it is still unknown."""
        refused = {(d.origin.file, d.origin.line) for d, _ in self.kept}
        if not refused:
            return self.rulesets

        def keep(r: Rule) -> bool:
            return r.origin is None or (r.origin.file, r.origin.line) not in refused
        return {fam: replace(rs, tables={n: replace(t, chains={c: replace(ch, rules=[r for r in ch.rules if keep(r)])
                                                              for c, ch in t.chains.items()})
                                         for n, t in rs.tables.items()})
                for fam, rs in self.rulesets.items()}

    def ruleset(self, family: Family) -> Ruleset:
        return self.rulesets.setdefault(family, Ruleset(family))

    def error(self, err: ParseError, fallback: Origin) -> None:
        self.diagnostics.append(err.diagnostic(fallback))

    def note(self, severity: str, code: str, message: str, origin: Origin, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(severity, code, message, origin, hint))

    def run(self, family: Family, table: Table, words: list[Token], origin: Origin,
            unknown_jumps: list[tuple[UnknownJump, Origin]] | None = None) -> None:
        """Apply one command (its first word is the command option) to `table`.

        A jump to a missing chain goes to `unknown_jumps` when given (a restore file
        reports it at COMMIT) instead of being reported here.
        """
        try:
            self._run(family, table, words, origin)
        except UnknownJump as e:
            if unknown_jumps is None:
                self.error(e, origin)
            else:
                unknown_jumps.append((e, origin))
        except ParseError as e:
            self.error(e, origin)

    def _run(self, family: Family, table: Table, words: list[Token], origin: Origin) -> None:
        if not words:
            return
        cmd_tok = words[0]
        if (bad := dash_defect(cmd_tok)) is not None:
            raise bad
        cmd = COMMANDS.get(cmd_tok.text)
        if cmd is None:
            raise ParseError(f"`{cmd_tok.text}` is not an iptables command", code="unknown-command",
                             token=cmd_tok, hint="a rule starts with -A, -I, -D or -R and a chain name")
        if cmd == "list":
            self.note("note", "skipped", f"{cmd_tok.text} only lists rules; skipped", cmd_tok.origin)
            return
        rest = words[1:]
        if cmd in ("flush", "zero", "delete-chain") and not rest:
            if cmd == "flush":
                for ch in table.chains.values():
                    ch.rules.clear()
            elif cmd == "delete-chain":
                for name in [n for n, ch in table.chains.items() if not ch.builtin]:
                    del table.chains[name]
            return
        if not rest:
            raise ParseError(f"{cmd_tok.text} needs a chain name", code="missing-argument", token=cmd_tok)
        chain_tok, rest = rest[0], rest[1:]
        name = chain_tok.text
        if cmd == "new":
            self._new_chain(table, chain_tok)
            return
        chain = self._chain(table, chain_tok)
        if cmd == "policy":
            if not chain.builtin:
                raise ParseError(f"chain {name} is user-defined and has no policy", code="bad-policy", token=chain_tok)
            if not rest or rest[0].text not in ("ACCEPT", "DROP"):
                raise ParseError("a policy must be ACCEPT or DROP", code="bad-policy",
                                 token=rest[0] if rest else chain_tok)
            chain.policy = rest[0].text
            self.unknown_policy.pop((family, table.name, name), None)
        elif cmd == "flush":
            chain.rules.clear()
        elif cmd == "zero":
            chain.counters = Counters() if chain.builtin else None
        elif cmd == "delete-chain":
            if chain.builtin:
                raise ParseError(f"cannot delete built-in chain {name}", code="bad-chain", token=chain_tok)
            del table.chains[name]
        elif cmd == "rename":
            if not rest:
                raise ParseError("-E needs the new chain name", code="missing-argument", token=chain_tok)
            check_chain_name(rest[0])
            table.chains = {(rest[0].text if k == name else k): v for k, v in table.chains.items()}
            chain.name = rest[0].text
        else:
            self._rule_command(cmd, family, table, chain, rest, origin)

    def _rule_command(self, cmd: str, family: Family, table: Table, chain: Chain, rest: list[Token],
                      origin: Origin) -> None:
        num = None
        if cmd in ("insert", "replace", "delete") and rest and rest[0].text.isdigit():
            num_tok, rest = rest[0], rest[1:]
            num = int(num_tok.text)
            if num < 1 or (cmd != "insert" and num > len(chain.rules)) or num > len(chain.rules) + 1:
                raise ParseError(f"rule number {num} is out of range for chain {chain.name} "
                                 f"({len(chain.rules)} rules)", code="bad-rulenum", token=num_tok)
        elif cmd == "replace":
            raise ParseError("-R needs a rule number", code="missing-argument")
        if cmd == "delete" and num is not None:
            del chain.rules[num - 1]
            return
        user_chains = UserChains(table)
        parser = RuleParser(Context(family, table.name, chain.name, known_sets=self.known_sets), user_chains)
        warnings: list[Diagnostic] = []
        try:
            rules = parser.parse(rest, origin, warnings)
        except UnknownJump:
            raise
        except ParseError as e:
            if cmd not in ("append", "insert"):
                raise
            rules = self._unread_rules(family, table, chain, rest, origin, e)
        self.diagnostics += warnings
        for r in rules:
            if r.target is not None and (path := chain_loop(table, r.target.name, chain.name)):
                raise ParseError(f"this rule makes chains loop: {' -> '.join([chain.name, *path])}",
                                 code="chain-loop", token=rest[-1] if rest else None,
                                 hint="the kernel refuses it (Too many links); break the cycle of jumps")
        if cmd == "append":
            chain.rules += rules
        elif cmd == "insert":
            at = (num or 1) - 1
            chain.rules[at:at] = rules
        elif cmd == "replace":
            chain.rules[num - 1:num] = rules
        else:  # delete by specification
            for r in rules:
                hit = next((k for k, old in enumerate(chain.rules) if old.same_rule(r)), None)
                if hit is None:
                    raise ParseError(f"no rule in {chain.name} matches `{' '.join(rule_words(r, family))}`",
                                     code="no-such-rule", token=rest[0] if rest else None)
                del chain.rules[hit]

    def _unread_rules(self, family: Family, table: Table, chain: Chain, rest: list[Token], origin: Origin,
                      err: ParseError) -> list[Rule]:
        """A rule the kernel refuses only for a value stockade cannot read either (an anonymised
        `--mac-source XX:XX:XX:XX:XX:XX`): its error stays, and the rule, with that value as an unknown
        match (extensions.opaque.Unread), stays in the model for the analyses. Else `err` is raised."""
        user_chains = {n for n, c in table.chains.items() if not c.builtin}
        lenient = RuleParser(Context(family, table.name, chain.name, known_sets=self.known_sets), user_chains,
                             lenient=True)
        try:
            rules = lenient.parse(rest, origin, [])
        except ParseError:
            raise err from None
        if not any(unread_parts(r) for r in rules):
            raise err
        d = err.diagnostic(origin)
        self.diagnostics.append(d)
        parts = [u for r in rules for u in unread_parts(r)]
        why = "; ".join(dict.fromkeys(u.why for u in parts))
        blanked = any(ANONYMISED.search(w) for u in parts for w in u.words)
        self.kept.append((d, Diagnostic("warning", "unread-value", f"{why}: the rule stays in the analysis, "
                                        "as a match that may or may not hold", d.origin, d.hint) if blanked else None))
        return rules

    def check(self, family: Family, table: Table, words: list[Token], origin: Origin) -> bool:
        """`-C CHAIN RULE`: whether the chain holds that rule now (iptables exits 1 when it does not)."""
        chain = table.chains.get(words[1].text) if len(words) > 1 else None
        if chain is None:
            return False
        user_chains = UserChains(table)
        try:
            rules = RuleParser(Context(family, table.name, chain.name, known_sets=self.known_sets),
                               user_chains).parse(words[2:], origin, [])
        except ParseError:
            return False
        return all(any(old.same_rule(r) for old in chain.rules) for r in rules)

    def _new_chain(self, table: Table, tok: Token) -> Chain:
        check_chain_name(tok)
        if tok.text in table.chains:
            raise ParseError(f"chain {tok.text} already exists", code="duplicate-chain", token=tok)
        chain = table.chains[tok.text] = Chain(tok.text, origin=tok.origin)
        return chain

    def _chain(self, table: Table, tok: Token) -> Chain:
        """The chain a command names; built-ins of the table spring into being on first use."""
        name = tok.text
        if name in table.chains:
            return table.chains[name]
        if name in BUILTIN_CHAINS.get(table.name, ()):
            chain = table.chains[name] = Chain(name, "ACCEPT", Counters())
            return chain
        if self.unknowns and not tok.text.startswith("-"):  # a command stockade cannot look into may have made it
            why, origin, _ = self.unknowns[0]
            self.note("warning", "unknown-chain", f"chain {name} is not made here; line {origin.line}, which "
                      "stockade cannot look into, may have made it", tok.origin,
                      f"create it in the script with `-N {name}`, or let stockade read that line")
            chain = table.chains[name] = Chain(name, origin=tok.origin)
            return chain
        raise self._missing_chain(table, tok)

    @staticmethod
    def _missing_chain(table: Table, tok: Token) -> ParseError:
        name = tok.text
        for existing in sorted(table.chains, key=len, reverse=True):
            glued = name[len(existing):]
            if name.startswith(existing) and glued in CORE:
                return ParseError(f"chain {name} does not exist; did you mean `{existing} {glued}`?",
                                  code="glued-option", token=tok,
                                  hint=f"put a space between the chain name {existing} and {glued}")
        elsewhere = [t for t, chains in BUILTIN_CHAINS.items() if name in chains]
        if elsewhere:
            return ParseError(f"chain {name} does not exist in table {table.name}", code="unknown-chain",
                              token=tok, hint=f"use `-t {elsewhere[0]}`")
        close = difflib.get_close_matches(name, list(table.chains), n=1)
        return ParseError(f"chain {name} does not exist", code="unknown-chain", token=tok,
                          hint=f"did you mean `{close[0]}`?" if close else f"create it first with `-N {name}`")


def check_chain_name(tok: Token, header: bool = False) -> None:
    """Refuse a user chain name iptables refuses: too long, starting with - or !, white space, a verdict,
    or, except in a restore file's `:NAME` header, a target extension's name (measured with iptables
    1.8.9, nft and legacy: `-N LOG` fails, `:LOG - [0:0]` loads)."""
    name = tok.text
    if len(name) > MAX_CHAIN_NAME:
        raise ParseError(f"chain name `{name[:40]}` is longer than {MAX_CHAIN_NAME} characters",
                         code="bad-chain", token=tok)
    if not name or name.startswith(("-", "!")) or any(c.isspace() for c in name):
        raise ParseError(f"`{name}` is not a valid chain name", code="bad-chain", token=tok,
                         hint="a chain name may not be empty, start with - or !, or hold white space")
    if name in VERDICTS or (name in XTABLES_TARGETS and not header):
        raise ParseError(f"chain name `{name}` is the name of a target", code="bad-chain", token=tok,
                         hint="iptables-restore refuses it; pick another name")


class UserChains:
    """A table's user chains as the rule parser asks about them, read from the table when asked: a set
    made for each rule cost a pass over every chain per rule."""

    def __init__(self, table: Table):
        self.table = table

    def __contains__(self, name: object) -> bool:
        chain = self.table.chains.get(name)  # type: ignore[arg-type]
        return chain is not None and not chain.builtin

    def __iter__(self) -> Iterator[str]:
        return (n for n, c in self.table.chains.items() if not c.builtin)


def chain_loop(table: Table, start: str, back_to: str) -> list[str] | None:
    """The chain path from `start` (a jump target) back to `back_to`, if jumps lead there (depth-first,
    without recursion: chains may nest deeper than Python's stack)."""
    came_from: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        name = todo.pop()
        if name == back_to:
            path = [name]
            while (prev := came_from[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        chain = table.chains.get(name)
        if chain is None or chain.builtin:
            continue
        for rule in reversed(chain.rules):
            t = rule.target
            if t is not None and t.name not in came_from:
                came_from[t.name] = name
                todo.append(t.name)
    return None


def command_table(builder: Builder, family: Family, tok: Token, words: list[Token]) -> Table:
    """The table an iptables command acts on. iptables-nft creates a missing table (with its built-in
    chains) only for a command that adds to it: -A, -I, -N, -P, and -F of a built-in chain (measured on
    1.8.9); any other command (a bare -F/-X/-Z, -Z/-D/-R/-X/-E of a chain) leaves it absent, so it acts
    on a detached empty table. After a command stockade cannot look into, the table may exist: a bare -F
    then empties what that command may have put in it, should the script make the table later, and -F of
    a user chain finds the table that command may have made."""
    check_table_name(tok)
    cmd = COMMANDS.get(words[0].text) if words else None
    rs = builder.rulesets.get(family)
    if (rs is not None and tok.text in rs.tables) or cmd in ("append", "insert", "new", "policy") \
            or (cmd == "flush" and len(words) > 1 and (words[1].text in BUILTIN_CHAINS[tok.text] or builder.unknowns)):
        return table_of(builder, family, tok)
    if cmd == "flush" and len(words) == 1 and builder.unknowns:
        builder.flushed[(family, tok.text)] = len(builder.unknowns)
    return Table(tok.text)


def check_table_name(tok: Token) -> None:
    if tok.text not in TABLES:
        close = difflib.get_close_matches(tok.text, TABLES, n=1)
        raise ParseError(f"table `{tok.text}` does not exist", code="unknown-table", token=tok,
                         hint=f"did you mean `{close[0]}`?" if close else "tables: " + ", ".join(TABLES))


def table_of(builder: Builder, family: Family, tok: Token, builtins: bool = True) -> Table:
    """The named table of the family's ruleset; a restore file declares its chains itself."""
    check_table_name(tok)
    rs = builder.ruleset(family)
    made = tok.text not in rs.tables
    table = rs.table(tok.text) if builtins else rs.tables.setdefault(tok.text, Table(tok.text))
    if made and builder.unknowns:
        builder.table_made(family, table)
    return table


def _jump(words: list[Token], table: Table) -> Target | None:
    """The verdict or user chain a rule's words jump to (`-j ACCEPT`), if they name one."""
    for k, t in enumerate(words[:-1]):
        name = words[k + 1].text
        if t.text in ("-j", "--jump", "-g", "--goto") and (name in VERDICTS or (
                name in table.chains and not table.chains[name].builtin)):
            return Target(name, None, t.text in ("-g", "--goto"))
    return None
