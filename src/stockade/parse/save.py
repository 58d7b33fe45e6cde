"""iptables-save / iptables-restore input into the model.

Accepts what iptables-restore accepts: `*table` ... `COMMIT` blocks, chain
headers `:NAME POLICY [pkts:bytes]`, commands (-A, -I, -N, ...), `[pkts:bytes]`
counter prefixes, `-c` counters and `#` comments.
"""
from __future__ import annotations

import re

from ..model import BUILTIN_CHAINS, Chain, Counters, Family, Origin, Table
from .command import Builder, check_chain_name, table_of
from .diagnostics import ParseError, Token

_HEADER = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$")
COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s*")


def split_line(line: str, file: str, lineno: int, start: int = 0) -> list[Token]:
    """Words of a restore line: white space separates, double quotes group, backslash escapes in quotes."""
    words: list[Token] = []
    i, n = start, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        col, buf, quoted = i + 1, [], False
        while i < n and (quoted or not line[i].isspace()):
            c = line[i]
            if c == '"':
                quoted = not quoted
            elif c == "\\" and quoted and i + 1 < n and line[i + 1] in "\"\\'":
                i += 1
                buf.append(line[i])
            else:
                buf.append(c)
            i += 1
        if quoted:
            raise ParseError("unbalanced double quote", code="unbalanced-quote",
                             token=Token("".join(buf), Origin(file, lineno, col)),
                             hint='close the quoted string with `"`')
        words.append(Token("".join(buf), Origin(file, lineno, col)))
    return words


def guess_family(text: str) -> Family:
    """ip6tables-save says so in its header; otherwise IPv6 addresses give it away."""
    head = text[:300]
    if "ip6tables-save" in head:
        return Family.IPV6
    if "iptables-save" in head:
        return Family.IPV4
    if re.search(r"^\S*-A .*\s-[sd]\s+[0-9a-fA-F]*:[0-9a-fA-F:]*[/\s]", text, re.M):
        return Family.IPV6
    return Family.IPV4


def read_save(text: str, file: str, family: Family | None = None, builder: Builder | None = None) -> Builder:
    """Parse an iptables-save dump into `builder` (a new one if not given) and return it."""
    family = family or guess_family(text)
    b = builder or Builder()
    b.ruleset(family)
    table: Table | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        origin = Origin(file, lineno, len(line) - len(line.lstrip()) + 1)
        if line and (not stripped or stripped == "COMMIT" or stripped.startswith("#")) and line != stripped:
            b.note("warning", "restore-whitespace",
                   "iptables-restore 1.8 refuses this whole file because of white space on this line "
                   "(blank line with spaces, indented comment, or space after COMMIT)", origin,
                   "remove the spaces; older iptables-restore versions accepted them")
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if stripped.startswith("*"):
                if table is not None:
                    raise ParseError(f"table {stripped[1:]} starts before COMMIT of table {table.name}",
                                     code="missing-commit", hint="end each table with a COMMIT line")
                table = table_of(b, family, Token(stripped[1:], Origin(file, lineno, origin.col + 1)), False)
                continue
            if table is None:
                raise ParseError(f"`{stripped[:40]}` outside a table", code="no-table",
                                 hint="start the table with a line such as `*filter`")
            if stripped == "COMMIT":
                table = None
                continue
            if stripped.startswith(":"):
                chain_header(table, stripped, origin)
                continue
            start = origin.col - 1
            counters = None
            if m := COUNTERS.match(line, start):
                counters = Counters(int(m.group(1)), int(m.group(2)))
                start = m.end()
            words = split_line(line, file, lineno, start)
            rs = b.ruleset(family)
            before = {n: len(c.rules) for n, c in rs.tables[table.name].chains.items()}
            b.run(family, table, words, Origin(file, lineno, start + 1))
            if counters is not None:
                for name, chain in table.chains.items():
                    if len(chain.rules) > before.get(name, 0):
                        chain.rules[-1].counters = counters
        except ParseError as e:
            b.error(e, origin)
    if table is not None:
        b.note("error", "missing-commit", f"table {table.name} has no COMMIT line", Origin(file, lineno + 1),
               "iptables-restore ignores a table that is not committed; add COMMIT")
    return b


def chain_header(table: Table, line: str, origin: Origin) -> None:
    m = _HEADER.match(line)
    if not m:
        raise ParseError(f"bad chain header `{line}`", code="bad-header", hint="write `:NAME POLICY [0:0]`")
    name, policy = m.group(1), m.group(2)
    builtin = name in BUILTIN_CHAINS[table.name]
    if not builtin:
        check_chain_name(Token(name, Origin(origin.file, origin.line, origin.col + 1)), header=True)
    if builtin and policy not in ("ACCEPT", "DROP"):
        raise ParseError(f"built-in chain {name} needs policy ACCEPT or DROP, not {policy}", code="bad-policy")
    if not builtin and policy != "-":
        raise ParseError(f"user chain {name} cannot have policy {policy}", code="bad-policy",
                         hint=f"write `:{name} - [0:0]`")
    counters = Counters(int(m.group(3)), int(m.group(4))) if m.group(3) else Counters()
    chain = table.chains.get(name)
    if chain is not None and not builtin:
        raise ParseError(f"chain {name} declared twice", code="duplicate-chain")
    table.chains[name] = Chain(name, policy if builtin else None, counters if builtin else None,
                               chain.rules if chain else [], origin)
