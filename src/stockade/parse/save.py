"""iptables-save / iptables-restore input into the model.

Accepts what iptables-restore accepts: `*table` ... `COMMIT` blocks, chain
headers `:NAME POLICY [pkts:bytes]`, commands (-A, -I, -N, ...), `[pkts:bytes]`
counter prefixes, `-c` counters and `#` comments.
"""
from __future__ import annotations

import ipaddress
import re

from ..heap import collector_paused
from ..model import BUILTIN_CHAINS, Chain, Counters, Family, Origin, Table
from ..model.diagnostics import ParseError, Token
from .command import COMMANDS, Builder, check_chain_name, table_of
from .plain import PlainRules
from .rule import UnknownJump

COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s*")
_FIELD_SEP = re.compile(r"[ \t\n]+")  # iptables-restore splits `*table` and `:CHAIN` lines with strtok(" \t\n")


# A word and the white space before it: runs of non-space and double-quoted strings (in which a backslash
# takes the next character along), as many as touch (`a"b c"d` is one word). \s is exactly str.isspace.
_WORD = re.compile(r'\s*((?:[^\s"]+|"(?:[^"\\]|\\.)*")+)')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?')  # a quoted string, or an unclosed one to the end
_ESCAPE = re.compile(r'\\(["\\\'])')  # in quotes, \" \\ and \' stand for the character; other backslashes stay


def _unquote(word: str) -> str:
    """A word without its quotes, escapes in quoted parts resolved."""
    return _QUOTED.sub(lambda m: _ESCAPE.sub(r"\1", m.group(1)), word)


def split_line(line: str, file: str, lineno: int, start: int = 0) -> list[Token]:
    """Words of a restore line: white space separates, double quotes group, backslash escapes in quotes."""
    words: list[Token] = []
    end = start
    while (m := _WORD.match(line, end)) is not None:
        word = m.group(1)
        words.append(Token(_unquote(word) if '"' in word else word, Origin(file, lineno, m.start(1) + 1)))
        end = m.end()
    if not line[end:].strip():
        return words
    # what is left starts with a double quote that never closes: its word runs to the end of the line
    quote = line.index('"', end)
    at = words.pop().origin.col - 1 if words and quote == end else quote
    raise ParseError("unbalanced double quote", code="unbalanced-quote",
                     token=Token(_unquote(line[at:]), Origin(file, lineno, at + 1)),
                     hint='close the quoted string with `"`')


def _quoted_words(text: str) -> list[str] | None:
    """The words of a line whose quoted strings (no backslash in the line) each stand alone between white
    space, as `--comment "a b"` does: the text between quotes is one word; else None."""
    parts = text.split('"')
    if len(parts) % 2 == 0:
        return None  # a quote that never closes
    words = parts[0].split()
    for k in range(1, len(parts), 2):
        before, after = parts[k - 1], parts[k + 1]
        if (before[-1:].isspace() or k == 1 and not before) and (after[:1].isspace() or not after):
            words.append(parts[k])
            words += after.split()
        else:
            return None  # glued to a word or another quoted string (`a"b c"`, `"a""b"`): one word of parts
    return words


def plain_words(line: str, start: int = 0) -> list[str] | None:
    """The words split_line finds, without positions; None where it raises (a quote that never closes)."""
    if '"' not in line:
        return line[start:].split()  # str.split's white space is \s
    if "\\" not in line and (words := _quoted_words(line[start:])) is not None:
        return words
    words = []
    end = start
    while (m := _WORD.match(line, end)) is not None:
        word = m.group(1)
        words.append(_unquote(word) if '"' in word else word)
        end = m.end()
    return words if not line[end:].strip() else None


_V6_WORDS = re.compile(
    r"(\s-p\s+(ipv6-icmp|icmpv6|icmp6|58)\b|--icmpv6-type\b|-m\s+(icmp6|hl|rt|frag|ipv6header|eui64|mh|dst|hbh)\b|"
    r"--reject-with\s+(icmp6-|adm-prohibited|addr-unreach|no-route)|-j\s+(DNPT|SNPT|HL)\b)")
_V4_WORDS = re.compile(
    r"(\s-p\s+(icmp|1)\b|--icmp-type\b|-m\s+(icmp|ttl|realm)\b|\s-f\b|--fragment\b|--reject-with\s+icmp-|"
    r"-j\s+(TTL|CLUSTERIP|ULOG)\b)")


_PORTS_AFTER = re.compile(r"\]:[\d:-]+$")  # `[2001:db8::1]:80-90`
_ADDRESS_SEP = re.compile(r"[/,\-\[\]]")


def _address_families(line: str) -> set[Family]:
    """Families of the IP addresses written in a rule line (ranges, lists, masks and ports split off)."""
    found: set[Family] = set()
    for word in line.split():
        if "." not in word and ":" not in word:
            continue  # no address of either family (ip_address would refuse every part of it)
        word = _PORTS_AFTER.sub("", word.strip('"'))
        for part in _ADDRESS_SEP.split(word):
            if part.count(".") == 3 and part.count(":") == 1:
                part = part.split(":")[0]  # address:port
            elif "." not in part and ":" not in part:
                continue
            try:
                found.add(Family(ipaddress.ip_address(part).version))
            except ValueError:
                continue
    return found


def families(text: str) -> tuple[Family, ...]:
    """The families a dump is for: its header says so, else what its rules use; neutral text serves both."""
    head = text[:300]
    if "ip6tables-save" in head:
        return (Family.IPV6,)
    if "iptables-save" in head:
        return (Family.IPV4,)
    v6 = False
    for line in text.splitlines():
        if line.lstrip().startswith(("#", "*", ":")):
            continue
        addrs = _address_families(line)
        if Family.IPV4 in addrs or _V4_WORDS.search(line):
            return (Family.IPV4,)  # whatever else the dump holds
        v6 = v6 or Family.IPV6 in addrs or bool(_V6_WORDS.search(line))
    return (Family.IPV6,) if v6 else (Family.IPV4, Family.IPV6)


def guess_family(text: str) -> Family:
    """The one family to read a dump as (IPv4 when it would serve both)."""
    return families(text)[0]


def read_save(text: str, file: str, family: Family | None = None, builder: Builder | None = None) -> Builder:
    """Parse an iptables-save dump into `builder` (a new one if not given) and return it.

    Without `family`, a dump with no family-specific content is read for both
    families, unless one family refuses lines the other takes (an extension of
    one family only): then it is that other family's. Each diagnostic is reported once.
    """
    b = builder or Builder()
    b.whole = True
    reads = {}
    for fam in (family,) if family else families(text):
        reads[fam] = Builder(known_sets=b.known_sets)
        with collector_paused():
            _read_family(text, file, fam, reads[fam])
    errors = {f: {(d.origin, d.code) for d in r.diagnostics if d.severity == "error"} for f, r in reads.items()}
    keep = [f for f in reads if not any(errors[f] > errors[g] for g in reads)]
    for fam in keep:
        seen = {(d.origin, d.code, d.message) for d in b.diagnostics}
        b.rulesets[fam] = reads[fam].rulesets[fam]
        b.diagnostics += [d for d in reads[fam].diagnostics if (d.origin, d.code, d.message) not in seen]
        b.kept += reads[fam].kept
    return b


def _creates_table(words: list[Token]) -> bool:
    """Whether a command makes iptables-restore create its table: all but a bare -F, -X or -Z."""
    return not (len(words) == 1 and COMMANDS.get(words[0].text) in ("flush", "delete-chain", "zero"))


def _restore_zero(table: Table, words: list[Token], named: set[str]) -> None:
    """-Z in a restore file as iptables-restore 1.8.9 (nft) does it: zeroing a built-in chain sets
    its policy back to ACCEPT, and a built-in chain the block has not named yet cannot be zeroed."""
    builtins = [n for n in BUILTIN_CHAINS[table.name] if n in table.chains]
    if len(words) == 1:
        for name in builtins:
            table.chains[name].policy = "ACCEPT"
        return
    name = words[1].text
    if name not in builtins:
        return
    if name not in named:
        raise ParseError(f"iptables-restore 1.8 (nft) cannot zero built-in chain {name} before the file "
                         "names it (Bad built-in chain name)", code="restore-zero", token=words[1],
                         hint="leave -Z out of the restore file; restored counters start at zero")
    table.chains[name].policy = "ACCEPT"


def _blank_defect(line: str, stripped: str) -> str | None:
    """What iptables-restore 1.8 refuses about white space on a line it does not skip as a comment."""
    if line and not stripped:
        return "a line of only white space (no command specified)"
    if line != line.lstrip() and stripped[:1] in ("#", "*", ":") or stripped == "COMMIT" and line != stripped:
        return f"white space around `{stripped[:20]}` (it must start the line; COMMIT must be alone on it)"
    return None


def _header_ignores_cr(table: Table | None, stripped: str) -> bool:
    """A carriage return in a chain header's third field (counters) or a user chain's policy is ignored."""
    if table is None or not stripped.startswith(":"):
        return False
    words = [w for w in _FIELD_SEP.split(stripped[1:]) if w]
    return len(words) >= 3 or (bool(words) and words[0] not in BUILTIN_CHAINS[table.name])


def _read_family(text: str, file: str, family: Family, b: Builder) -> None:
    """iptables-restore 1.8 (nft): each `*table` block replaces the table; built-in chains
    exist once anything in the block creates it; a block that creates nothing leaves no table."""
    rs = b.ruleset(family)
    table: Table | None = None
    created = False
    jumps: list[tuple[UnknownJump, Origin]] = []
    named: set[str] = set()  # chains the block has named so far (see _restore_zero)
    cr_seen = False
    plain = PlainRules(family, b.known_sets)
    for lineno, raw in enumerate(text.split("\n"), 1):  # fgets: only \n ends a line
        if table is not None and (raw[:2] == "-A" or raw[:1] == "[") and \
                (chain := _plain_rule(plain, table, raw, file, lineno)) is not None:
            created = True
            named.add(chain)
            continue
        line = raw.rstrip("\r")
        stripped = line.strip()
        origin = Origin(file, lineno, len(line) - len(line.lstrip()) + 1)
        if (bad := _blank_defect(line, stripped)) is not None:
            b.note("error", "restore-whitespace", f"iptables-restore 1.8 refuses this file here: {bad}", origin,
                   "remove the spaces (older iptables-restore versions accepted them); stockade reads on "
                   "as if they were gone")
        if not stripped or stripped.startswith("#"):
            continue
        if raw.endswith("\r") and not cr_seen and not _header_ignores_cr(table, stripped):
            cr_seen = True
            b.note("error", "crlf", "the line ends with a carriage return (Windows line ends): iptables-restore "
                   "1.8 keeps it in the last word of the line and refuses it", origin,
                   "convert the file to Unix line ends (dos2unix); stockade reads on as if it were")
        try:
            if stripped.startswith("*"):
                if table is not None:
                    raise ParseError(f"table {stripped[1:]} starts before COMMIT of table {table.name}",
                                     code="missing-commit", hint="end each table with a COMMIT line")
                first = next((w for w in _FIELD_SEP.split(stripped[1:]) if w), "")  # later words are ignored
                name = table_of(b, family, Token(first, Origin(file, lineno, origin.col + 1)), False).name
                table = rs.tables[name] = Table.with_builtins(name)
                created, jumps, named = False, [], set()
                continue
            if table is None:
                raise ParseError(f"`{stripped[:40]}` outside a table", code="no-table",
                                 hint="start the table with a line such as `*filter`")
            if stripped == "COMMIT":
                for err, at in jumps:
                    rule_line = (err.token.origin if err.token else at).line
                    b.note("error", err.code, f"{err.message} (rule on line {rule_line}); iptables-restore "
                           f"refuses table {table.name} when committing it", origin,
                           "declare the chain (`:NAME - [0:0]`) before the first rule that jumps to it")
                if not created:
                    del rs.tables[table.name]
                table = None
                continue
            if stripped.startswith(":"):
                chain_header(table, stripped, origin)
                created = True
                named.add(next((w for w in _FIELD_SEP.split(stripped[1:]) if w), ""))
                continue
            start = origin.col - 1
            counters = None
            if m := COUNTERS.match(line, start):
                counters = Counters(int(m.group(1)), int(m.group(2)))
                start = m.end()
            words = split_line(line, file, lineno, start)
            if words and COMMANDS.get(words[0].text) == "rename":
                raise ParseError("iptables-restore 1.8 (nft) cannot rename a chain it creates in the same "
                                 "restore (CHAIN_RENAME fails)", code="restore-rename", token=words[0],
                                 hint="declare the chain under its final name")
            if words and COMMANDS.get(words[0].text) == "zero":
                _restore_zero(table, words, named)
            created = created or _creates_table(words)
            named.update(w.text for w in words[1:2])
            # only the chain a command names gains rules from it
            chain = table.chains.get(words[1].text) if counters is not None and len(words) > 1 else None
            before = len(chain.rules) if chain is not None else 0
            b.run(family, table, words, Origin(file, lineno, start + 1), jumps)
            if counters is not None and len(words) > 1 and (chain := table.chains.get(words[1].text)) is not None \
                    and len(chain.rules) > before:
                chain.rules[-1].counters = counters
        except ParseError as e:
            b.error(e, origin)
    if table is not None:
        end = text.count("\n") + (1 if text and not text.endswith("\n") else 0) + 1  # where restore says so
        b.note("error", "missing-commit", f"table {table.name} has no COMMIT line", Origin(file, end),
               "iptables-restore ignores a table that is not committed; add COMMIT")


def _plain_rule(plain: PlainRules, table: Table, raw: str, file: str, lineno: int) -> str | None:
    """An `-A CHAIN ...` line (after `[pkts:bytes]` counters, if any) read by PlainRules and appended, as
    the loop in _read_family would: the chain's name; None if it is left for that loop (RuleParser)."""
    if raw.endswith("\r"):
        return None
    start, counters = 0, None
    if raw[0] == "[":
        if (m := COUNTERS.match(raw)) is None:
            return None
        counters, start = Counters(int(m.group(1)), int(m.group(2))), m.end()
    words = plain_words(raw, start)
    if not words or len(words) < 2 or words[0] != "-A" or (chain := table.chains.get(words[1])) is None:
        return None
    rule = plain.rule(table, chain.name, words, 2, Origin(file, lineno, start + 1), counters)
    if rule is None:
        return None
    chain.rules.append(rule)
    return chain.name


def chain_header(table: Table, line: str, origin: Origin) -> None:
    """`:NAME POLICY [pkts:bytes]` as iptables-restore 1.8 reads it.

    Fields are split on blanks; a user chain takes any policy word (`-`, `ACCEPT`,
    `- DROP`, even none but counters) and is created, or flushed if it exists; a
    built-in chain takes ACCEPT, DROP or `-` (keep the policy). Words after the
    policy are ignored unless they are counters.
    """
    words = [w for w in _FIELD_SEP.split(line[1:]) if w]
    col = origin.col + 1
    if not words:
        raise ParseError("chain header without a chain name", code="bad-header",
                         token=Token(line, origin), hint="write `:NAME POLICY [0:0]`")
    name = words[0]
    builtin = name in BUILTIN_CHAINS[table.name]
    if not builtin:
        check_chain_name(Token(name, Origin(origin.file, origin.line, col + line[1:].find(name))), header=True)
    if len(words) < 2:
        raise ParseError(f"chain header `{line}` has no policy field", code="bad-header",
                         token=Token(line, origin), hint=f"write `:{name} {'ACCEPT' if builtin else '-'} [0:0]`")
    policy = words[1]
    m = COUNTERS.fullmatch(words[2]) if len(words) > 2 else None
    counters = Counters(int(m.group(1)), int(m.group(2))) if m else Counters()
    if not builtin:
        table.chains[name] = Chain(name, None, None, [], origin)
        return
    if policy not in ("ACCEPT", "DROP", "-"):
        raise ParseError(f"built-in chain {name} needs policy ACCEPT or DROP, not {policy}", code="bad-policy",
                         hint="`-` keeps the current policy")
    chain = table.chains.get(name)
    if chain is None:
        chain = table.chains[name] = Chain(name, "ACCEPT", Counters(), [], origin)
    if policy != "-":
        chain.policy = policy
    chain.counters, chain.origin = counters, origin
