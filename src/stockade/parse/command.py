"""iptables commands (-A -I -D -R -N -X -F -Z -P -E) applied to a model being built.

Both readers end here: iptables-restore lines after `*table`, and `iptables ...`
command lines of a shell script. A command the real tool would refuse leaves the
model unchanged and produces one error diagnostic, never a cascade.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..extensions import Context
from ..extensions.opaque import XTABLES_TARGETS
from ..model import BUILTIN_CHAINS, TABLES, VERDICTS, Chain, Counters, Family, Origin, Ruleset, Table
from ..model.diagnostics import Diagnostic, ParseError, Token
from ..render.save import rule_words
from .dashes import dash_defect
from .rule import CORE, RuleParser, UnknownJump

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
    # rules a script adds only if a condition stockade could not decide holds: rule origin -> script lines
    depends: dict[Origin, tuple[int, ...]] = field(default_factory=dict)

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
        rules = parser.parse(rest, origin, warnings)
        self.diagnostics += warnings
        for r in rules:
            if r.target is not None and (path := _loop(table, r.target.name, chain.name)):
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


def _loop(table: Table, start: str, back_to: str) -> list[str] | None:
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


def table_of(builder: Builder, family: Family, tok: Token, builtins: bool = True) -> Table:
    """The named table of the family's ruleset; a restore file declares its chains itself."""
    if tok.text not in TABLES:
        close = difflib.get_close_matches(tok.text, TABLES, n=1)
        raise ParseError(f"table `{tok.text}` does not exist", code="unknown-table", token=tok,
                         hint=f"did you mean `{close[0]}`?" if close else "tables: " + ", ".join(TABLES))
    rs = builder.ruleset(family)
    return rs.table(tok.text) if builtins else rs.tables.setdefault(tok.text, Table(tok.text))
