"""Firewall shell scripts, and tutorials pasted whole, into the model.

The shell is parsed by `shell.py`; this module decides what each line is and runs
the commands: `iptables`/`ip6tables` commands go to `Builder.run` on the right
family and table, restore-format lines (`*filter`, `:CHAIN POLICY`, `-A ...`,
`COMMIT`) are read as iptables-restore reads them, variables and for loops are
expanded as sh would, and everything else is noted as skipped.

What is a command and what is prose (`line_kind`): a line is read only if
- it is a restore-format line: `*TABLE`, `:CHAIN POLICY [p:b]`, `COMMIT`, or starts with
  a command option such as `-A` (also typed with an en-dash);
- its first word is `iptables`/`ip6tables` (a path, after `sudo` or a `$ ` prompt)
  followed by an option (`iptables -F`, not "iptables executes its rules ...");
- it is an assignment `NAME=...`, starts with `$` (`$IPT -A ...`), is a shell
  construct in its complete form (`for NAME in ...` followed by `do`, `if ...; then`,
  `case X in`, `name() {`), a reserved word the enclosing construct expects (`do`,
  `done`), a function defined earlier, a path, or a command from KNOWN_COMMANDS;
- it is a cron entry (five time fields, then a command).
Everything else is prose and is ignored without a word; its apostrophes are never
taken for quotes. A `#` line is a comment, as in sh (so `# iptables-save` is not run).

Lost line breaks (`find_cuts`): web pages collapse lines, joining them with two
spaces or a no-break space, or with nothing at all (`iptables -Fiptables -X`). A
line is cut (outside quotes) where a run of white space is two or more characters
long or holds a no-break space, and where `iptables`, `ip6tables` or `modprobe` is
glued to the end of a word and followed by a space; a cut is kept only if the
text after it could start a line by the rules above (a comment, a restore line,
a command), and a restore command (`-A ...`) never cuts an `iptables` command
(`iptables -t nat  -A ...` stays whole). The pieces are then read as separate
lines, and one warning says so when a piece other than a comment was joined to
the line before it: as written, the shell (or iptables-restore) would have read
the whole line as one comment or one command.

Restore lines outside a `*TABLE` ... `COMMIT` block go to the filter table:
tutorials show one file in snippets, with prose in between.

Running: commands run in order, each once (`exit` is noted, not obeyed: a page
holds several scripts). Only iptables commands have a known exit status (they
fail when they draw an error), so `a && b` skips b only after a failed iptables
command and `a || b` runs b only then, turning a's errors into notes: the script
handles that failure. `if`/`while`/`until`/`case` are not evaluated; their bodies
are skipped, with a warning when they hold iptables commands. A `$(...)` or
backquote value cannot be computed, so what needs it (a command, a for loop) is
skipped with a warning naming both. An unset variable expands to nothing, as in
sh, with a warning where an iptables command or loop uses it.
"""
from __future__ import annotations

import re

from ..model import TABLES, Family, Origin, Table
from ..model.diagnostics import Diagnostic, ParseError, Token
from .command import COMMANDS, Builder, table_of
from .dashes import DASHES
from .save import COUNTERS, chain_header, split_line
from .shell import (
    ASSIGNMENT,
    BLANKS,
    NAME,
    TYPO_QUOTES,
    AndOr,
    For,
    FuncDef,
    Group,
    Node,
    Parser,
    Simple,
    Source,
    Unexpandable,
    Unsupported,
    Value,
    Word,
    expand,
    simple_commands,
    typographic_quote,
)

IPTABLES = {"iptables": Family.IPV4, "iptables-legacy": Family.IPV4, "iptables-nft": Family.IPV4,
            "ip6tables": Family.IPV6, "ip6tables-legacy": Family.IPV6, "ip6tables-nft": Family.IPV6}
SAVE_TOOLS = {f"{cmd}{suffix}{variant}" for cmd in ("iptables", "ip6tables") for suffix in ("-save", "-restore")
              for variant in ("", "-legacy", "-nft")} | {"iptables-apply", "netfilter-persistent"}
SERVICE_NAMES = {"iptables", "ip6tables", "netfilter-persistent", "firewalld", "ufw"}
# Commands firewall scripts and tutorials run besides iptables (their lines are noted, not read as prose).
KNOWN_COMMANDS = frozenset("""
    modprobe insmod rmmod lsmod sysctl echo printf cat cp mv rm mkdir touch chmod chown grep egrep sed awk
    tee vi vim nano emacs service systemctl chkconfig update-rc.d rc-update crontab ipset nft ufw
    firewall-cmd apt apt-get aptitude yum dnf zypper pacman nmap hping2 hping3 ping ping6 telnet netstat
    ss ifconfig ip sleep logger exit export readonly unset [ [[ sudo
""".split()) | SAVE_TOOLS
GLUE_NAMES = ("ip6tables", "iptables", "modprobe")  # long enough never to be the end of another word
RESERVED_ENDS = {"do", "done", "then", "else", "elif", "fi", "esac", "}"}
LIST_LETTERS = set("LSnvx")
DECLARATIONS = {"export", "readonly", "local", "declare", "typeset", "unset"}

_STRAY = re.compile(r"([^\w\s$#'\"\\/(){}<>;&|=.~:!`*-]+)((?:sudo|ip6?tables)(?:-\w+)?)")
_HEADER = re.compile(r":[^\s:]+[ \t]+\S+([ \t]+\[\d+:\d+\])?")
_PIECE_END = re.compile(r"\s{2,}|\u00a0")
_CRON = re.compile(r"[\d*/,-]+")


def _fixed_dash(word: str) -> str:
    """`–A` as the author meant it: typographic dashes become `-` (one letter) or `--`."""
    if not word or word[0] not in DASHES:
        return word
    rest = word.lstrip("".join(DASHES))
    return ("-" + rest) if len(rest) == 1 else ("--" + rest)


def _is_command_option(word: str) -> bool:
    return _fixed_dash(word) in COMMANDS


def _next_line_word(text: str, end: int) -> str:
    """First word of the next non-blank line after offset `end`."""
    start = text.find("\n", end)
    while start >= 0:
        stop = text.find("\n", start + 1)
        words = text[start + 1:stop if stop >= 0 else len(text)].split(maxsplit=1)
        if words:
            return words[0].rstrip(";")
        start = stop
    return ""


def line_kind(text: str, pos: int, end: int, expected: frozenset[str] = frozenset(),
              functions: set[str] | frozenset[str] = frozenset()) -> str:
    """"shell", "restore", "cron" or "prose" for the line text[pos:end] (see the module docstring)."""
    line = text[pos:end]
    words = line.split()
    if not words:
        return "prose"
    first = words[0]
    head = _PIECE_END.split(line.strip(), 1)[0]  # before any lost line break
    if head in ("COMMIT", *(f"*{t}" for t in TABLES)) or _HEADER.fullmatch(head) or _is_command_option(first) \
            or (COUNTERS.match(head) and len(words) > 1 and _is_command_option(words[1])):
        return "restore"
    if len(words) > 5 and all(_CRON.fullmatch(w) for w in words[:5]):
        return "cron"
    return "shell" if _is_shell(words, line, text, end, expected, functions) else "prose"


def _is_shell(words: list[str], line: str, text: str, end: int, expected: frozenset[str],
              functions: set[str] | frozenset[str]) -> bool:
    first = words[0].rstrip(";")
    if first in expected:
        return True
    if first in RESERVED_ENDS:
        return len(words) == 1  # a lone `done` is shell (and a syntax error); "done by hand." is prose
    if first == "$" and len(words) > 1:  # a tutorial's prompt
        return _is_shell(words[1:], line, text, end, expected, functions)
    if ASSIGNMENT.match(first) or first.startswith("$") or first in functions or _STRAY.fullmatch(first):
        return True
    if first in DECLARATIONS:
        return len(words) > 1 and bool(NAME.match(words[1]))
    if first == "for":
        return bool(re.match(r"for\s+[A-Za-z_]\w*\s*(;|$|\s+in\b)", line.strip())) and (
            bool(re.search(r";\s*do\b", line)) or _next_line_word(text, end) == "do")
    if first in ("if", "while", "until"):
        keyword = "then" if first == "if" else "do"
        return bool(re.search(rf";\s*{keyword}\b", line)) or _next_line_word(text, end) == keyword
    if first == "case":
        return bool(re.match(r"case\s+\S+\s+in\b", line.strip()))
    if first == "function" or re.match(r"[A-Za-z_][\w-]*\s*\(\s*\)", line.strip()):
        return True
    i = 1 if first in ("sudo", "doas") else 0
    while i and i < len(words) - 1 and words[i].startswith("-"):
        i += 1
    if i >= len(words):
        return True  # a lone `sudo`
    name = words[i]
    base = name.rsplit("/", 1)[-1]
    if base in IPTABLES and "/init.d/" not in name:
        nxt = words[i + 1] if i + 1 < len(words) else ""
        return nxt[:1] in ("-", "$", "!") or nxt[:1] in DASHES
    return base in KNOWN_COMMANDS or name.startswith(("/", "./"))


# -- lost line breaks -----------------------------------------------------------------------------

def _piece_kind(text: str, pos: int, end: int) -> str:
    # the start of the piece is enough to tell, and keeps long joined lines linear
    return "comment" if text[pos] == "#" else line_kind(text, pos, min(end, pos + 200))


def _line_pieces(text: str, start: int, end: int) -> list[tuple[int, str]]:
    """(offset, kind) of each piece of the physical line text[start:end] (see the module docstring)."""
    pos = start
    while pos < end and text[pos] in BLANKS:
        pos += 1
    if pos >= end:
        return []
    pieces = [(pos, _piece_kind(text, pos, end))]
    mode, quote, i = pieces[0][1], None, pos
    while i < end:
        c = text[i]
        if mode in ("shell", "restore"):
            if quote:
                i += 2 if (c == "\\" and quote == '"') else 1
                if c == quote:
                    quote = None
                continue
            if c == "\\":
                i += 2
                continue
            if c == '"' or (c == "'" and mode == "shell"):
                quote = c
                i += 1
                continue
            if c == "#" and mode == "shell" and text[i - 1] in BLANKS:
                mode = "comment"
        cut, nxt = None, i + 1
        if c in BLANKS:
            j = i
            while j < end and text[j] in BLANKS:
                j += 1
            if j < end and (j - i >= 2 or "\u00a0" in text[i:j]):
                cut = j
            nxt = j
        elif i > start and text[i - 1].isalnum():
            glued = next((g for g in GLUE_NAMES if text.startswith(g, i)), None)
            if glued and i + len(glued) < end and text[i + len(glued)] in BLANKS:
                cut = i
        if cut is not None:
            kind = _piece_kind(text, cut, end)
            if kind != "prose" and not (kind == "restore" and mode == "shell"):
                pieces.append((cut, kind))
                mode, nxt = kind, cut + 1
        i = nxt
    return pieces


def find_cuts(src: Source) -> tuple[list[int], list[Diagnostic]]:
    """Offsets where a lost line break is restored, and a warning for each line that had them."""
    text, cuts, diags = src.text, [], []
    for start in src.line_starts:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        pieces = _line_pieces(text, start, end)
        cuts += [p for p, _ in pieces[1:]]
        joined = [p for p, kind in pieces[1:] if kind != "comment"]
        if joined:
            why = ("as written, the whole line is one `#` comment and none of it is read"
                   if pieces[0][1] == "comment" else "as written, it is all read as one command")
            diags.append(Diagnostic(
                "warning", "lost-line-breaks",
                f"{len(pieces)} lines run together here (their line breaks were lost, as when text is copied "
                f"from a web page); read as separate lines", src.origin(joined[0]),
                f"{why}; put each command on a line of its own"))
    return cuts, diags


# -- running --------------------------------------------------------------------------------------

class ScriptReader:
    """Runs the parsed script against a Builder, keeping variables, functions and restore state."""

    def __init__(self, text: str, file: str, builder: Builder):
        self.src = Source(text, file)
        self.b = builder
        self.env: dict[str, Value] = {}
        self.functions: dict[str, Node] = {}
        self.restore_table: dict[Family, Table | None] = {}
        self.depth = 0

    def read(self) -> None:
        first = len(self.b.diagnostics)
        cuts, warnings = find_cuts(self.src)
        self.b.diagnostics += warnings
        parser = Parser(self.src, lambda pos, end, expected: line_kind(self.src.text, pos, end, expected,
                                                                        parser.functions), cuts)
        nodes = parser.parse()
        self.b.diagnostics += parser.diagnostics
        self.run(nodes)
        self._tidy(first)

    def _tidy(self, first: int) -> None:
        """Each defect once (a loop body repeats them), in the order of the text."""
        seen, out = set(), []
        for d in self.b.diagnostics[first:]:
            if (key := str(d)) not in seen:
                seen.add(key)
                out.append(d)
        out.sort(key=lambda d: (d.origin.file != self.src.file, d.origin.line, d.origin.col))
        self.b.diagnostics[first:] = out

    def origin(self, offset: int) -> Origin:
        return self.src.origin(offset)

    def snippet(self, start: int, end: int) -> str:
        text = " ".join(self.src.text[start:end].replace("\\\n", " ").split())
        return text if len(text) <= 60 else text[:57] + "..."

    def note(self, message: str, offset: int, hint: str | None = None, severity: str = "note",
             code: str = "skipped") -> None:
        self.b.note(severity, code, message, self.origin(offset), hint)

    # nodes ---------------------------------------------------------------------------------

    def run(self, nodes: list[Node]) -> bool | None:
        status = None
        for node in nodes:
            status = self.exec(node)
        return status

    def exec(self, node: Node) -> bool | None:
        """Run one node; the result is its exit status if known (iptables commands), else None."""
        if isinstance(node, Simple):
            return self.simple(node)
        if isinstance(node, AndOr):
            status = None
            for k, (op, item) in enumerate(node.items):
                if (op == "&&" and status is False) or (op == "||" and status is not False):
                    continue  # unknown commands are taken to succeed
                mark = len(self.b.diagnostics)
                status = self.exec(item)
                if status is False and k + 1 < len(node.items) and node.items[k + 1][0] == "||":
                    self._handled(mark)
            return status
        if isinstance(node, For):
            self.for_loop(node)
        elif isinstance(node, Group):
            saved = dict(self.env)
            status = self.run(node.body)
            if node.subshell:
                self.env = saved
            return status
        elif isinstance(node, FuncDef):
            self.functions[node.name] = node.body
        elif isinstance(node, Unsupported):
            self.unsupported(node)
        elif node.kind == "restore":
            self.restore_line(node.start, node.end, Family.IPV4)
        else:
            self.note(f"cron entry `{self.snippet(node.start, node.end)}`; skipped", node.start)
        return None

    def _handled(self, mark: int) -> None:
        """`iptables -N X || true`: the script expects the failure, so its errors become notes."""
        self.b.diagnostics[mark:] = [
            Diagnostic("note", d.code, f"{d.message} (the script handles this failure with `||`)", d.origin, d.hint)
            if d.severity == "error" else d for d in self.b.diagnostics[mark:]]

    def unsupported(self, node: Unsupported) -> None:
        cmds = simple_commands(node.body)
        firewall = [c for c in cmds if c.words and _names_iptables(c.words[0])]
        first, last = self.src.line_of(node.start), self.src.line_of(node.end)
        message = (f"`{node.keyword}` is not evaluated: skipped the {len(cmds)} command{'s' * (len(cmds) != 1)} "
                   f"inside (lines {first}-{last})")
        if firewall:
            self.note(message, node.start, f"stockade reads command lists and for loops only; move the "
                      f"iptables commands out of the `{node.keyword}` block", "warning", "unsupported-shell")
        else:
            self.note(message, node.start)

    def for_loop(self, node: For) -> None:
        try:
            if node.items is None:  # `for x; do`: the arguments of the function it is in
                fields = [(v, node.start) for v in str(self.env.get("@", "")).split()]
            else:
                fields = [f for w in node.items for f in expand(w, self.env, unset=self.unset)]
        except Unexpandable as e:
            n = len(simple_commands(node.body))
            first, last = self.src.line_of(node.start), self.src.line_of(node.end)
            self.cannot_expand(e, f"the for loop over it ({n} command{'s' * (n != 1)}, lines {first}-{last})")
            return
        for value, _ in fields:
            self.env[node.var] = value
            self.run(node.body)

    # simple commands ----------------------------------------------------------------------------

    def simple(self, node: Simple) -> bool | None:
        words = node.words
        if not words:
            return None
        if m := _STRAY.fullmatch(words[0].raw):
            stray, cmd = m.group(1), m.group(2)
            self.b.note("error", "stray-character",
                        f"stray `{stray}` before `{cmd}`: the shell looks for a command named `{words[0].raw}`, "
                        "so this command never runs", self.origin(node.start), f"delete the `{stray}`")
            return False
        assigns = []
        while words and (a := words[0].assignment()):
            assigns.append(a)
            words = words[1:]
        if words and words[0].literal in DECLARATIONS:  # `export NAME=value`, `unset NAME`
            assigns += [a for w in words[1:] if (a := w.assignment())]
            if words[0].literal == "unset":
                for w in words[1:]:
                    self.env.pop(w.raw, None)
            words = []
        if not words:
            for name, value in assigns:
                self.env[name] = self.value(value)
            return None
        saved = {name: self.env.get(name) for name, _ in assigns}
        for name, value in assigns:
            self.env[name] = self.value(value)
        try:
            return self.command(node, words)
        finally:
            for name, old in saved.items():
                if old is None:
                    self.env.pop(name, None)
                else:
                    self.env[name] = old

    def value(self, word: Word) -> Value:
        """An assignment's value: not split; a command substitution makes it unknown."""
        try:
            return expand(word, self.env, split=False)[0][0]
        except Unexpandable as e:
            return e.unknown

    def command(self, node: Simple, words: list[Word]) -> bool | None:
        unset: list[tuple[str, int]] = []
        fields: list[Token] = []
        problem = None
        for w in words:
            try:
                fields += [Token(t, self.origin(off)) for t, off in
                           expand(w, self.env, unset=lambda name, off: unset.append((name, off)))]
            except Unexpandable as e:
                problem = e
                break
        while fields and fields[0].text in ("sudo", "doas", "$"):
            prompt = fields.pop(0).text
            while prompt != "$" and fields and fields[0].text.startswith("-"):
                fields.pop(0)
        what = f"`{self.snippet(node.start, node.end)}`"
        if not fields:
            if problem is not None:  # `$(which iptables) -A ...`: the command itself is unknown
                self.cannot_expand(problem, what)
            return None
        name = fields[0].text
        base = name.rsplit("/", 1)[-1]
        family = IPTABLES.get(base) if "/init.d/" not in name else None
        if family is not None or name in self.functions:
            for var, off in unset:
                self.unset(var, off)
            if problem is not None:
                self.cannot_expand(problem, what)
                return None
            if name in self.functions:
                return self.call(name, fields[1:])
            return self.iptables(family, fields[0], fields[1:])
        if base in SAVE_TOOLS and "-restore" in base and node.heredoc is not None:
            self.heredoc_restore(node, Family.IPV6 if base.startswith("ip6") else Family.IPV4)
        elif base in SAVE_TOOLS:
            self.note(f"{what}: {'prints the ruleset' if '-save' in base else 'loads rules from elsewhere'}; "
                      "skipped", node.start, None if "-save" in base else
                      "to check a saved rules file, run `stockade lint FILE` on it")
        elif "/init.d/" in name or (base == "service" and len(fields) > 1 and fields[1].text in SERVICE_NAMES):
            self.note(f"{what} controls the firewall service, not its rules; skipped", node.start)
        elif name not in (":", "true"):
            self.note(f"{what} is not an iptables command; skipped", node.start)
        return None

    def call(self, name: str, args: list[Token]) -> bool | None:
        if self.depth > 20:
            return None
        saved = {k: self.env.get(k) for k in ("@", "#", *map(str, range(1, 10)))}
        for k in saved:
            self.env.pop(k, None)
        self.env.update({"@": " ".join(a.text for a in args), "#": str(len(args))})
        self.env.update({str(i): a.text for i, a in enumerate(args[:9], 1)})
        self.depth += 1
        try:
            return self.exec(self.functions[name])
        finally:
            self.depth -= 1
            for k, v in saved.items():
                if v is None:
                    self.env.pop(k, None)
                else:
                    self.env[k] = v

    def unset(self, name: str, offset: int) -> None:
        if name.isdigit() or name in "@*#":
            message = f"`${name}` is an argument of the script, which stockade does not have; it expands to nothing"
        else:
            message = f"`${name}` is not set, so it expands to nothing"
        self.note(message, offset, f"set it before this line, e.g. `{name}=...`" if NAME.fullmatch(name) else
                  "write the value it stands for", "warning", "unset-variable")

    def cannot_expand(self, e: Unexpandable, skipped: str) -> None:
        raw = e.unknown.raw
        if e.var is not None:
            line = self.src.line_of(e.unknown.offset)
            message = (f"cannot expand `${e.var}`: it holds the output of `{raw}` (line {line}), "
                       f"which stockade does not run; skipped {skipped}")
            hint = f"write the value into the script instead, e.g. `{e.var}=\"192.0.2.1 192.0.2.2\"`"
        else:
            what = "evaluate arithmetic" if raw.startswith("$((") else "run commands"
            message = f"cannot expand `{raw}`: stockade does not {what}; skipped {skipped}"
            hint = "write the value it produces instead"
        self.note(message, e.offset, hint, "warning", "cannot-expand")

    # iptables ---------------------------------------------------------------------------------

    def iptables(self, family: Family, cmd: Token, args: list[Token]) -> bool:
        """`iptables ARGS`: -t (anywhere) picks the table; Builder.run does the rest."""
        errors = sum(d.severity == "error" for d in self.b.diagnostics)
        try:
            table_tok, words = _table_option(args)
            words = self._command_first(words, cmd)
            if words:
                table = table_of(self.b, family, table_tok or Token("filter", cmd.origin), builtins=True)
                self.b.run(family, table, words, cmd.origin)
        except ParseError as e:
            self.b.error(e, cmd.origin)
        return sum(d.severity == "error" for d in self.b.diagnostics) == errors

    def _command_first(self, words: list[Token], cmd: Token) -> list[Token]:
        """The words with the command option first, as Builder.run wants; getopt lets it come anywhere."""
        k = next((i for i, t in enumerate(words) if _is_command_option(t.text)), None)
        if k is None:
            if any(re.fullmatch(r"-[A-Za-z]+", t.text) and set(t.text[1:]) <= LIST_LETTERS
                   and set(t.text[1:]) & {"L", "S"} for t in words):
                self.b.note("note", "skipped", "listing the rules changes nothing; skipped", cmd.origin)
                return []
            if any(t.text in ("-h", "--help", "-V", "--version") for t in words):
                self.b.note("note", "skipped", "help and version requests change nothing; skipped", cmd.origin)
                return []
            if not words:
                raise ParseError("no command given", code="missing-command", token=cmd,
                                 hint="add a command such as -A CHAIN, -I CHAIN, -N CHAIN or -P CHAIN POLICY")
            return words
        if k == 0:
            return words
        after = words[k + 1:]
        take = 0
        if after and not after[0].text.startswith("-"):
            take = 1
            action = COMMANDS.get(_fixed_dash(words[k].text))
            if action in ("insert", "replace", "delete") and len(after) > 1 and after[1].text.isdigit():
                take = 2
            elif action in ("policy", "rename") and len(after) > 1:
                take = 2
        return [words[k], *after[:take], *words[:k], *after[take:]]

    # restore-format lines -------------------------------------------------------------------------

    def restore_line(self, start: int, end: int, family: Family) -> None:
        """One iptables-restore line, read as iptables-restore reads it (double quotes only)."""
        src, text = self.src, self.src.text
        lineno = src.line_of(start)
        line_start = src.line_starts[lineno - 1]
        line = text[line_start:end]
        stripped = text[start:end].strip()
        origin = src.origin(start)
        first = stripped.split()[0]
        try:
            if first.startswith("*"):
                self.restore_table[family] = table_of(self.b, family, Token(first[1:], src.origin(start + 1)))
                return
            if first == "COMMIT":
                self.restore_table[family] = None
                return
            table = self.restore_table.get(family) or table_of(self.b, family, Token("filter", origin))
            if first.startswith(":"):
                chain_header(table, stripped, origin)
                return
            pos = start - line_start
            if m := COUNTERS.match(line, pos):
                pos = m.end()  # a script has no use for packet counters
            words = split_line(line, src.file, lineno, pos)
            for w in words:
                if quote := next((c for c in w.text if c in TYPO_QUOTES), None):
                    self.b.diagnostics.append(typographic_quote(quote, w.text, w.origin))
            self.b.run(family, table, words, src.origin(line_start + pos))
        except ParseError as e:
            self.b.error(e, origin)

    def heredoc_restore(self, node: Simple, family: Family) -> None:
        """`iptables-restore <<EOF`: the here-document is a restore file of its own."""
        doc = node.heredoc
        self.restore_table[family] = None
        offset = doc.start
        for line in self.src.text[doc.start:doc.end].split("\n"):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                self.restore_line(offset + len(line) - len(line.lstrip()), offset + len(line.rstrip()), family)
            offset += len(line) + 1
        self.restore_table[family] = None


def _names_iptables(word: Word) -> bool:
    base = word.raw.rsplit("/", 1)[-1]
    return base in IPTABLES or word.raw.startswith("$") or word.raw in ("sudo", "doas")


def _table_option(args: list[Token]) -> tuple[Token | None, list[Token]]:
    """Take `-t TABLE` (also `--table`, `--table=T`, `-tT`) and `-w`/`-W` out of the words."""
    table: Token | None = None
    words: list[Token] = []
    i = 0
    while i < len(args):
        t = args[i]
        w = t.text
        if w in ("-w", "--wait", "-W", "--wait-interval"):
            i += 2 if i + 1 < len(args) and args[i + 1].text.replace(".", "").isdigit() else 1
            continue
        if w in ("-t", "--table"):
            if i + 1 >= len(args):
                raise ParseError(f"option {w} needs a table name", code="missing-argument", token=t)
            new, i = args[i + 1], i + 2
        elif w.startswith("--table="):
            new, i = Token(w[len("--table="):], t.origin), i + 1
        elif w.startswith("-t") and not w.startswith("--") and len(w) > 2:
            new, i = Token(w[2:], t.origin), i + 1
        else:
            words.append(t)
            i += 1
            continue
        if table is not None:
            raise ParseError("-t given twice", code="duplicate-option", token=t,
                             hint=f"first given at column {table.origin.col}; one command works on one table")
        table = new
    return table, words


def read_script(text: str, file: str, builder: Builder | None = None) -> Builder:
    """Read a shell script or a pasted tutorial into `builder` (a new one if not given)."""
    b = builder or Builder()
    ScriptReader(text, file, b).read()
    return b
