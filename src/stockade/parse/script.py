"""Firewall shell scripts, and tutorials pasted whole, into the model.

Bash is parsed by tree-sitter-bash and run statically by `bash/run.py` (`Shell`), as
bash would run it; this module decides, for a page, which lines are bash at all,
and handles the commands that make rules: `iptables`/`ip6tables` go to
`Builder.run` on the right family and table, `iptables-restore` input and
restore-format lines (`*filter`, `:CHAIN POLICY`, `-A ...`, `COMMIT`) are read as
iptables-restore reads them, and other commands are noted as skipped (a program
stockade cannot look into is a warning in a script: it may change the firewall).

Script or page: a text whose first line is a `#!` line is a script and all of it
is bash. Any other text is a page (a tutorial with prose, restore snippets and
lost line breaks); the page layer below makes the bash text of it, blanking prose
and putting a `:` placeholder where a restore or cron line was, and when it finds
every line to be bash and no line break lost, the text is read as a script after all.

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

Running (see bash/run.py for what cannot be known and the choices taken): a script
runs as bash runs it, with the arguments and environment of `Invocation`; on a page
`exit` is noted, not obeyed (a page holds several scripts) and a syntax error skips
that part instead of ending the script. An iptables command's exit status is known
(it fails when it draws an error; `-C` answers from the ruleset built so far), so
`a || b` after a failed a turns a's errors into notes: the script handles that
failure. A value stockade cannot compute (`$(curl ...)`) is a warning naming both; an
iptables rule that needs it stays in at its place with those words unknown
(`unread_iptables`), and a command that may do anything to the firewall (a program
stockade cannot look into, `eval` of text it cannot expand) makes the family's answers
depend on its line (`unknown_program`; see extensions/opaque.py). An unset variable
expands to nothing, as in bash, with a warning where an iptables command uses it (after
a `source` of a file that is not there, it is unknown instead). Rules added under a
condition stockade could not decide are recorded in `Builder.depends` with the lines
they depend on, and the analyses read them as rules that may or may not be there
(`mark_conditional`).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..extensions.opaque import Unread, loadable, unread_parts
from ..model import TABLES, Family, Match, Origin, Table
from ..model.diagnostics import Diagnostic, ParseError, Token
from ..render.save import rule_words
from .bash.run import Shell
from .bash.tree import Code, Source, child, syntax_errors
from .bash.values import CR, Abort, Exit, Loop, Stream, Unknown, Unresolved, Var
from .command import COMMANDS, Builder, command_table, table_of
from .dashes import DASHES
from .ipset import add_ipsets, ipset_command
from .save import COUNTERS, chain_header, split_line

BLANKS = " \t\r\u00a0\u2002\u2003\u2009\u202f"  # web pages indent and separate with no-break spaces
TYPO_QUOTES = "\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

IPTABLES = {"iptables": Family.IPV4, "iptables-legacy": Family.IPV4, "iptables-nft": Family.IPV4,
            "ip6tables": Family.IPV6, "ip6tables-legacy": Family.IPV6, "ip6tables-nft": Family.IPV6}
SAVE_TOOLS = {f"{cmd}{suffix}{variant}" for cmd in ("iptables", "ip6tables") for suffix in ("-save", "-restore")
              for variant in ("", "-legacy", "-nft")} | {"iptables-apply", "netfilter-persistent"}
SERVICE_NAMES = {"iptables", "ip6tables", "netfilter-persistent", "firewalld", "ufw"}
# Commands firewall scripts and tutorials run besides iptables (their lines are noted, not read as prose).
KNOWN_COMMANDS = frozenset([
    "modprobe", "insmod", "rmmod", "lsmod", "sysctl", "echo", "printf", "cat", "cp", "mv", "rm", "mkdir",
    "touch", "chmod", "chown", "grep", "egrep", "sed", "awk", "tee", "vi", "vim", "nano", "emacs", "service",
    "systemctl", "chkconfig", "update-rc.d", "rc-update", "crontab", "ipset", "nft", "ufw", "firewall-cmd",
    "apt", "apt-get", "aptitude", "yum", "dnf", "zypper", "pacman", "nmap", "hping2", "hping3", "ping", "ping6",
    "telnet", "netstat", "ss", "ifconfig", "ip", "sleep", "logger", "exit", "export", "readonly", "unset", "[",
    "[[", "sudo", "eval", "nohup", "bash", "sh", "typeset", "seq"
]) | SAVE_TOOLS
# Programs that only read or print, or change something other than the netfilter rules (processes,
# kernel modules, routes, links): their lines are noted, never taken to change the firewall. (Not
# ifup/ifdown: their hook scripts may restore rules; not dnsmasq or NetworkManager: they may fill sets.)
HARMLESS = frozenset([
    "date", "hostname", "uname", "whoami", "id", "which", "ls", "mktemp", "wc", "sort", "uniq", "head", "tail",
    "cut", "tr", "basename", "dirname", "stat", "find", "dig", "host", "nslookup", "wget", "curl", "tput", "clear",
    "sync", "true", "false", "test", "expr", "bc", "ps", "pidof", "pgrep", "getent", "lsof", "tc", "arp",
    "kill", "killall", "pkill", "depmod", "route", "brctl", "ethtool", "iwconfig"])
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
    if first.startswith("((") or re.match(r"for\s*\(\(", line.strip()):
        return "))" in line
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


# -- the page layer: which lines bash reads -------------------------------------------------------

OPENERS = {"if", "for", "while", "until", "case", "select", "{"}
CLOSERS = {"fi", "done", "esac", "}"}
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][\w.-]*)\1")
_CASE_PATTERN = re.compile(r"\s*\(?[^\s()]+(\s*\|\s*[^\s()]+)*\s*\)")


def is_script(text: str) -> bool:
    """A real script, run as bash runs it: its first line is a `#!` line. (A text without one is read as
    a page, and still as bash runs it when the page layer finds every line to be shell.)"""
    return text.lstrip(" \t").startswith("#!") and "\n" in text[:300]


@dataclass
class Page:
    """The bash text of a page: prose blanked, restore and cron lines replaced by `:` placeholders, lost
    line breaks restored; `to_src` maps each character back to the page."""

    text: str
    to_src: list[int]
    placeholders: dict[int, tuple[str, int, int]]  # offset of `:` -> (kind, start, end) in the page
    diagnostics: list[Diagnostic]
    clean: bool  # every line is shell and no line break was lost: a script as it stands


def _quote_end(text: str, start: int, end: int) -> tuple[str, int] | None:
    """(quote, offset) of a quote left open at the end of the shell line text[start:end], else None."""
    quote, i, qpos = None, start, -1
    while i < end:
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c == "\\":
            i += 2
            continue
        elif c in "'\"":
            quote, qpos = c, i
        elif c == "#" and (i == start or text[i - 1] in BLANKS):
            break
        i += 1
    return (quote, qpos) if quote else None


def read_page(src: Source) -> Page:
    text = src.text
    cuts, diags = find_cuts(src)
    cutset = set(cuts)
    out: list[str] = []
    to_src: list[int] = []
    placeholders: dict[int, tuple[str, int, int]] = {}
    depth, functions = 0, set()
    verbatim_until: str | None = None  # here-document delimiter
    carry = False  # the line before ended inside quotes or with a backslash
    clean = not cuts

    def emit(s: str, origin: int) -> None:
        out.append(s)
        to_src.extend(range(origin, origin + len(s)) if len(s) > 1 or s != "\n" else [origin])

    for _li, start in enumerate(src.line_starts):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        nl = end < len(text)
        if verbatim_until is not None or carry:
            line = text[start:end]
            if verbatim_until is not None and line.strip("\t") == verbatim_until:
                verbatim_until = None
            elif carry:
                carry = line.rstrip().endswith("\\") or _quote_end(text, start, end) is not None
            emit(line, start)
            if nl:
                emit("\n", end)
            continue
        bounds = [start] + sorted(c for c in cutset if start < c < end) + [end]
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if k:
                out.append("\n")
                to_src.append(a)
            pos = a
            while pos < b and text[pos] in BLANKS:
                pos += 1
            piece = text[pos:b]
            if not piece.strip():
                emit(" " * (b - a), a)
                continue
            if piece.startswith("#"):
                emit(_plain(text[a:b]), a)
                continue
            expected = frozenset(RESERVED_ENDS | {"in", ";;"}) if depth > 0 else frozenset()
            kind = line_kind(text, pos, b, expected, functions)
            if kind == "prose" and depth > 0 and _CASE_PATTERN.match(piece):
                kind = "shell"
            if kind != "shell":
                if kind != "prose":
                    clean = False
                    placeholders[len(to_src) + (pos - a)] = (kind, pos, b)
                    emit(" " * (pos - a) + ":" + " " * (b - pos - 1), a)
                else:
                    clean = False
                    emit(" " * (b - a), a)
                continue
            first = piece.split()[0]
            if m := _STRAY.fullmatch(first):
                diags.append(Diagnostic(
                    "error", "stray-character", f"stray `{m.group(1)}` before `{m.group(2)}`: the shell looks for a "
                    f"command named `{first}`, so this command never runs", src.origin(pos),
                    f"delete the `{m.group(1)}`"))
                emit(" " * (b - a), a)
                clean = False
                continue
            open_quote = _quote_end(text, pos, b)
            if open_quote is not None:
                quote, qpos = open_quote
                close = _closing(text, qpos, quote)
                if close < 0:
                    kind_name = "double" if quote == '"' else "single"
                    diags.append(Diagnostic(
                        "error", "unbalanced-quote", f"unbalanced {kind_name} quote: `{quote}` is never closed",
                        src.origin(qpos), f"close the quoted text with {quote}; an apostrophe in a word also opens "
                        "a quote"))
                    emit(" " * (b - a), a)
                    clean = False
                    continue
                carry = k == len(bounds) - 2
            words = piece.split()
            depth += sum(w in OPENERS for w in words) - sum(w.rstrip(";") in CLOSERS for w in words)
            depth = max(depth, 0)
            fn = re.match(r"(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\s*\)", piece) \
                or re.match(r"function\s+([A-Za-z_][\w-]*)", piece)
            if fn:
                functions.add(fn.group(1))
            if k == len(bounds) - 2:
                if m := _HEREDOC.search(piece.replace("<<<", "   ")):
                    verbatim_until = m.group(2)
                carry = carry or piece.rstrip().endswith("\\")
            emit(_plain(text[a:b]), a)
        if nl:
            emit("\n", end)
    return Page("".join(out), to_src, placeholders, diags, clean)


def _plain(s: str) -> str:
    """Web pages separate words with no-break and other wide spaces; bash only knows space and tab."""
    return s.translate({ord(c): " " for c in BLANKS if c not in " \t"})


def _closing(text: str, p: int, quote: str) -> int:
    """Offset of the quote closing the one at p; a quote may span lines but not a blank line; -1 if none."""
    j = text.find(quote, p + 1)
    while quote == '"' and j > 0 and _escaped(text, j):
        j = text.find(quote, j + 1)
    if j < 0 or re.search(r"\n[ \t]*\n", text[p:j]):
        return -1
    return j


def _escaped(text: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def typographic_quote(quote: str, word: str, origin: Origin) -> Diagnostic:
    """A curly quote where a shell (or iptables-restore) quote was meant: it stays in the value."""
    return Diagnostic("warning", "typographic-quote",
                      f"`{quote}` (U+{ord(quote):04X}) is a typographic quote, not a shell quote: "
                      f"it stays part of `{word}`", origin,
                      "write a plain `\"` or `'`; the text was probably pasted from a web page or word processor")


# -- running ----------------------------------------------------------------------------------------

@dataclass
class Invocation:
    """How the script is run: its arguments, environment and where `source` looks for files."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    include_paths: list[str] = field(default_factory=list)


class ScriptReader(Shell):
    """Runs a script (or a page's shell lines) with bash's semantics, sending firewall commands to a Builder."""

    def __init__(self, text: str, file: str, builder: Builder, how: Invocation | None = None):
        how = how or Invocation()
        super().__init__(how.args, how.env, how.include_paths)
        self.src = Source(text, file)
        self.b = builder
        self.script_name = file
        self.restore_table: dict[Family, Table | None] = {}
        self.typo_lines: set[tuple[str, int]] = set()
        self.unset_uses: list[tuple[str, int]] = []
        self.page: Page | None = None
        self.conditional: list = []  # (rule, origins of the undecided conditions it was added under)

    def read(self) -> None:
        first = len(self.b.diagnostics)
        directory = str(Path(self.src.file).resolve().parent) if self.src.file else None
        if is_script(self.src.text):
            text = self.src.text
            if "\r" in text:
                at = text.index("\r")
                self.report_at("warning", "carriage-return", "this line ends with a carriage return (a file saved with "
                               "Windows line ends): bash keeps it as part of the last word, so `ACCEPT` reads "
                               "`ACCEPT\\r`", self.src.origin(at), "convert the file with `dos2unix` or `sed -i "
                               "'s/\\r$//'`")
                text = text.replace("\r", CR)
            code = Code(text, self.src.origin, directory)
        else:
            page = read_page(self.src)
            self.b.diagnostics += page.diagnostics
            if page.clean and not syntax_errors(Code(page.text, self.src.origin, directory).root):
                code = Code(self.src.text, self.src.origin, directory)
            else:
                self.page = page
                self.obey_exit = False
                to_src = page.to_src
                code = Code(page.text, lambda o: self.src.origin(to_src[o] if o < len(to_src) else len(self.src.text)),
                            directory)
        try:
            self.run_code(code)
        except Exit:
            pass
        except (Loop, Abort) as e:
            if isinstance(e, Abort):
                self.report("error", e.code, e.message, e.offset, e.hint)
        except RecursionError:  # a construct deeper than Python's stack, beyond the nesting limit
            self.report_at("error", "shell-nesting", "the script nests too deeply for stockade to read; stopped",
                           self.src.origin(0), "split the deepest construct into functions")
        self.b.settle()
        self.mark_conditional()
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
        return self.code.origin(offset)

    def report(self, severity: str, code: str, message: str, offset: int, hint: str | None = None) -> None:
        self.b.note(severity, code, message, self.origin(offset), hint)

    def report_at(self, severity: str, code: str, message: str, origin: Origin, hint: str | None = None) -> None:
        self.b.note(severity, code, message, origin, hint)

    def note(self, message: str, offset: int, hint: str | None = None, severity: str = "note",
             code: str = "skipped") -> None:
        self.report(severity, code, message, offset, hint)

    # hooks ------------------------------------------------------------------------------------

    def literal(self, text: str, offset: int) -> None:
        quote = next((c for c in text if c in TYPO_QUOTES), None)
        if quote is None:
            return
        at = offset + text.index(quote)
        origin = self.origin(at)
        if (origin.file, origin.line) in self.typo_lines:
            return
        self.typo_lines.add((origin.file, origin.line))
        full, s = self.code.text, at
        while s > 0 and full[s - 1] not in " \t\n;|&":
            s -= 1
        e = at
        while e < len(full) and full[e] not in " \t\n;|&":
            e += 1
        self.b.diagnostics.append(typographic_quote(quote, full[s:e], origin))

    def values(self, name: str, index: str | None, offset: int, quiet: bool = False):
        vals, is_list, star = super().values(name, index, offset, quiet)
        if not quiet and not vals and not is_list and self.lookup(name) is None and name not in "@*#?$!-0":
            self.unset_uses.append((name, offset))
        return vals, is_list, star

    def mark(self) -> int:
        return len(self.b.diagnostics)

    def handled(self, mark: int) -> None:
        """`iptables -N X || true`: the script expects the failure, so its errors become notes."""
        self.b.diagnostics[mark:] = [
            Diagnostic("note", d.code, f"{d.message} (the script handles this failure with `||`)", d.origin, d.hint)
            if d.severity == "error" else d for d in self.b.diagnostics[mark:]]

    def exit_ignored(self, node) -> None:
        self.note(f"`{self.snippet(node)}` is not obeyed: a page holds several scripts", self.code.start(node))

    def simple(self, node) -> bool | None:
        self.unset_uses = []
        return super().simple(node)

    def b_colon(self, fields, node) -> bool | None:
        start = self.code.start(node)
        if self.page is not None and self.code.text is self.page.text and start in self.page.placeholders:
            kind, a, b = self.page.placeholders[start]
            if kind == "restore":
                self.restore_line(self.src.text[a:b], self.src.origin(a), Family.IPV4)
            else:
                self.note(f"cron entry `{' '.join(self.src.text[a:b].split())[:60]}`; skipped", start)
        return True

    def for_loop(self, node) -> bool | None:
        try:
            return super().for_loop(node)
        except Unresolved as e:
            body = child(node, "body")
            n = _count_commands(body)
            first, last = self.code.line(self.code.start(node)), self.code.line(self.code.end(node) - 1)
            self.cannot_expand(e, f"the for loop over it ({n} command{'s' * (n != 1)}, lines {first}-{last}) "
                               "once, with the loop variable unknown", "read")
            # its rules may be added any number of times, each with a value stockade does not know
            self.scopes[-1][self.code.raw(child(node, "variable"))] = Var(e.unknown)
            self.assumed_run(node, lambda: self.loop_body(body))  # it may run no time
            return None

    # what stockade cannot know ---------------------------------------------------------------------

    def depends_on(self, origin: Origin) -> str:
        """`depends on script line N` (of FILE, when it is not the script itself)."""
        return f"depends on script line {origin.line}" + (f" of {origin.file}" if origin.file != self.src.file
                                                          else "")

    def unresolved_why(self, e: Unresolved) -> str:
        u = e.unknown
        origin = u.code.origin(u.offset)
        what = {"command": "which stockade does not run", "file": "a file stockade could not read",
                "source": "a file that is not there to read", "read": "input stockade cannot know"}.get(
                    u.why, "which stockade cannot compute")
        held = f"`${e.var}` may be set by " if e.var is not None and u.why == "source" else \
            f"`${e.var}` holds " if e.var is not None else ""
        return f"{self.depends_on(origin)} ({held}`{u.raw}`, {what})"

    def unknown_program(self, node, problem: Unresolved | None = None, what: str | None = None) -> None:
        """Every answer about the rules read so far and after depends on this command (Builder.unknown_command);
        not for a tutorial page (its commands are examples) or inside `$(...)` (its output is what is used)."""
        if self.page is not None or self.capturing:
            return
        origin = self.origin(self.code.start(node))
        if what is None:
            what = f"`{self.snippet(node)}` runs what stockade cannot expand" + (
                f" (`{problem.unknown.raw}`)" if problem is not None else "")
        self.b.unknown_command(f"{self.depends_on(origin)}: {what}, which may change the firewall", origin,
                               (f"[{self.snippet(node)}]",))

    def unread_iptables(self, family: Family, fields: list[tuple[str, int]], node, problem: Unresolved) -> bool | None:
        """`iptables -A CHAIN ... $UNKNOWN ...`: where the table, chain and operation are known and the
        operation adds a rule, that rule with the words stockade cannot expand as an unknown match, at its
        place; otherwise the command may do anything to the family (unknown_program)."""
        cmd = Token(fields[0][0], self.origin(fields[0][1]))
        toks = [Token(t, self.origin(off)) for t, off in fields[1:]]
        unknown = {id(t) for t, (_, off) in zip(toks, fields[1:]) if off in self.unresolved}
        what = f"`{self.snippet(node)}`"
        try:
            table_tok, words = _table_option(toks)
        except ParseError:
            table_tok, words = None, []
        k = next((i for i, t in enumerate(words) if _is_command_option(t.text) and id(t) not in unknown), None)
        if k is not None:
            words = self._command_first(words, cmd)
        action = COMMANDS.get(_fixed_dash(words[0].text)) if k is not None else None
        if action == "list":  # -C, -S, -L change nothing; what they answer is unknown
            self.cannot_expand(problem, what)
            return None
        chain_known = len(words) > 1 and id(words[1]) not in unknown
        if (table_tok is not None and id(table_tok) in unknown) or action not in ("append", "insert") \
                or not chain_known or (action == "insert" and len(words) > 2 and id(words[2]) in unknown):
            self.cannot_expand(problem, what)
            self.unknown_program(node, problem)
            return None
        known: list[Token] = []
        unread: list[str] = []
        standalone = False
        target_unknown = False
        for t in words[2:]:
            if id(t) not in unknown:
                known.append(t)
                continue
            if known and known[-1].text.startswith("-") and len(known[-1].text) > 1:  # an option's value
                opt = known.pop()
                neg = ["!"] if known and known[-1].text == "!" else []
                if neg:
                    known.pop()
                unread += [*neg, opt.text, t.text]
                target_unknown = target_unknown or opt.text in ("-j", "--jump", "-g", "--goto")
            else:
                unread.append(t.text)
                standalone = True
        if standalone and not any(t.text in ("-j", "--jump", "-g", "--goto") for t in known):
            target_unknown = True  # the words may hold the target (iptables takes one -j only)
        why = self.unresolved_why(problem)
        self.cannot_expand(problem, f"{what}: its rule is kept with `{' '.join(unread)}` unknown ({why})", "read")
        try:
            table = table_of(self.b, family, table_tok or Token("filter", cmd.origin), builtins=True)
            self.mark_assumed(lambda: self.b.add_unread(family, table, words[1], action, known, unread, why,
                                                        cmd.origin, target_unknown))
        except ParseError as e:
            self.b.error(e, cmd.origin)
            return False
        return None

    # commands -------------------------------------------------------------------------------

    def external(self, fields: list[tuple[str, int]], node, problem: Unresolved | None) -> bool | None:
        fields = list(fields)
        while fields and fields[0][0] == "$" and self.page is not None:  # a tutorial's prompt
            fields.pop(0)
            if fields and fields[0][0] in ("sudo", "doas"):
                return self.command(fields, node, problem)
        what = f"`{self.snippet(node)}`"
        if not fields:
            if problem is not None:
                self.cannot_expand(problem, what)
            return None
        name = fields[0][0]
        base = name.rsplit("/", 1)[-1]
        family = IPTABLES.get(base) if "/init.d/" not in name else None
        if family is None:  # what another program prints is unknown (iptables says what it prints itself)
            self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
        if family is not None:
            for var, off in self.unset_uses:
                self.unset_warning(var, off)
            if problem is not None:
                return self.unread_iptables(family, fields, node, problem)
            toks = [Token(t, self.origin(off)) for t, off in fields]
            return self.mark_assumed(lambda: self.iptables(family, toks[0], toks[1:]))
        if base == "ipset" and problem is None:
            return self.mark_assumed(lambda: self.ipset([Token(t, self.origin(off)) for t, off in fields[1:]], node))
        if problem is not None and base not in KNOWN_COMMANDS and base not in HARMLESS:
            self.cannot_expand(problem, what)
            self.unknown_program(node, problem, f"{what} runs `{name}`, a program stockade cannot look into")
            return None
        if base in SAVE_TOOLS and "-restore" in base and self.stdin is not None:
            fam = Family.IPV6 if base.startswith("ip6") else Family.IPV4
            return self.mark_assumed(lambda: self.restore_stream(self.stdin, fam, node))
        if base in SAVE_TOOLS:
            self.note(f"{what}: {'prints the ruleset' if '-save' in base else 'loads rules from elsewhere'}; "
                      "skipped", self.code.start(node), None if "-save" in base else
                      "to check a saved rules file, run `stockade lint FILE` on it")
        elif "/init.d/" in name or (base == "service" and len(fields) > 1 and fields[1][0] in SERVICE_NAMES):
            self.note(f"{what} controls the firewall service, not its rules; skipped", self.code.start(node))
        elif base in KNOWN_COMMANDS or base in HARMLESS or self.page is not None or self.capturing:
            self.note(f"{what} is not an iptables command; skipped", self.code.start(node))
        else:
            self.report("warning", "unknown-command",
                        f"{what} runs `{name}`, a program stockade cannot look into; if it changes the firewall, "
                        "what it does is unknown: answers about the firewall depend on this line",
                        self.code.start(node),
                        "if it is a script, pass its directory with --include-path and run it with `bash FILE`")
            self.unknown_program(node, what=f"{what} runs `{name}`, a program stockade cannot look into")
        return None

    def ipset(self, args: list[Token], node) -> bool | None:
        """`ipset [OPTIONS] COMMAND ...`: the sets a script makes, as `ipset save` prints them; `restore`
        reads its input (a here-document, `< FILE`, `-file FILE`) line by line; what only prints changes
        nothing. A command ipset refuses is an error at its line and changes nothing, as in bash."""
        words, file = [], None
        i = 0
        while i < len(args):
            w = args[i].text
            if w in ("-o", "-output", "-f", "-file") and i + 1 < len(args):
                file = args[i + 1].text if w in ("-f", "-file") else file
                i += 2
                continue
            if w not in ("-q", "-quiet", "-t", "-terse", "-s", "-sorted", "-r", "-resolve", "-n", "-name"):
                words.append(args[i])
            i += 1
        if not words:
            return None
        first = words[0].text
        if first in ("restore", "r", "-R"):
            start = self.code.start(node)
            if file:
                text, where = self.read_file(file, start), None
            else:
                text, where = (self.stdin.text, self.stdin.where) if self.stdin is not None else (None, None)
            if text is None or isinstance(text, Unknown):
                if text is None or text.why != "file":  # a missing file is reported where it is named
                    self.note(f"`{self.snippet(node)}` loads sets from input stockade cannot read; they are unknown",
                              start, "give the sets in the script or the file with --include-path", "warning",
                              "unresolved-input")
                return None
            where = where or (lambda o: self.origin(start))
            offset, ok = 0, True
            for line in text.split("\n"):
                if line.strip() and not line.strip().startswith("#") and line.strip() != "COMMIT":
                    ok = self.ipset_line(shlex.split(line, comments=True), where(offset)) and ok
                offset += len(line) + 1
            return ok
        if first in ("help", "version", "header", "-h", "-v", "-V", "list", "l", "-L", "save", "s", "-S", "test",
                     "t", "-T"):
            return None  # prints, or tests a member: no set changes
        return self.ipset_line([w.text for w in words], words[0].origin)

    def ipset_line(self, words: list[str], origin: Origin) -> bool:
        try:
            ipset_command(self.b.sets, words, origin, saved=True)
        except ParseError as e:
            self.b.error(e, origin)
            return False
        return True

    def mark_assumed(self, fn) -> bool | None:
        """Rules added under a condition stockade could not decide are recorded with the lines they depend on."""
        if not self.assumed:
            return fn()
        before = {id(r) for r in self._rules()}
        status = fn()
        for r in self._rules():
            if id(r) not in before and r.origin is not None:
                self.b.depends[r.origin] = tuple(self.assumed)
                self.conditional.append((r, tuple(self.assumed_at)))
        return status

    def mark_conditional(self) -> None:
        """At the end: each rule added under a condition stockade could not decide, and still there, may
        or may not be loaded; the analyses read it so (a stand-in match the kernel's view leaves out)."""
        present = {id(r) for r in self._rules()}
        for r, where in self.conditional:
            if id(r) in present and loadable(r):  # (a stand-in already may or may not match)
                why = "; ".join(f"{self.depends_on(o)} (stockade cannot tell whether the script gets here)"
                                for o in dict.fromkeys(o for o, _ in where))
                r.matches.append(Match("condition", Unread((), why, kernel=all(p for _, p in where))))
        self.conditional.clear()

    def _rules(self):
        return [r for rs in self.b.rulesets.values() for t in rs.tables.values() for c in t.chains.values()
                for r in c.rules]

    def unset_warning(self, name: str, offset: int) -> None:
        if name.isdigit() or name in "@*#":
            message = (f"`${name}` is an argument of the script, and none was given; it expands to nothing")
            hint = "give the script's arguments with --arg (e.g. `--arg start`)"
        else:
            message = f"`${name}` is not set, so it expands to nothing"
            hint = f"set it before this line, e.g. `{name}=...`, or give it with --env {name}=..." \
                if NAME.fullmatch(name) else "write the value it stands for"
        self.note(message, offset, hint, "warning", "unset-variable")

    # iptables ---------------------------------------------------------------------------------

    def iptables(self, family: Family, cmd: Token, args: list[Token]) -> bool:
        """`iptables ARGS`: -t (anywhere) picks the table; Builder.run does the rest."""
        errors = sum(d.severity == "error" for d in self.b.diagnostics)
        try:
            table_tok, words = _table_option(args)
            words = self._command_first(words, cmd)
            if words and words[0].text in ("-C", "--check"):  # the ruleset the script has built so far
                table = command_table(self.b, family, table_tok or Token("filter", cmd.origin), words)
                return self.b.check(family, table, words, cmd.origin)
            listing = not words or _fixed_dash(words[0].text) in ("-S", "--list-rules", "-L", "--list")
            if self.outs and listing:  # its output is read: `iptables -S | grep ...`
                if words and _fixed_dash(words[0].text) in ("-S", "--list-rules"):
                    table = command_table(self.b, family, table_tok or Token("filter", cmd.origin), words)
                    return self.list_rules(family, table, words[1].text if len(words) > 1 else None)
                self.write_unknown(Unknown(f"iptables {' '.join(t.text for t in args)}", 0, self.code))
                return None
            if words:
                had = set(self.b.rulesets[family].tables) if family in self.b.rulesets else set()
                table = command_table(self.b, family, table_tok or Token("filter", cmd.origin), words)
                self.b.run(family, table, words, cmd.origin)
                if sum(d.severity == "error" for d in self.b.diagnostics) > errors and table.name not in had \
                        and not any(c.rules for c in table.chains.values()):  # (a stand-in kept for the analyses)
                    self.b.ruleset(family).tables.pop(table.name, None)  # a refused command creates no table
        except ParseError as e:
            self.b.error(e, cmd.origin)
        return sum(d.severity == "error" for d in self.b.diagnostics) == errors

    def list_rules(self, family: Family, table: Table, name: str | None) -> bool:
        """`iptables -S [CHAIN]`: the rules the script has made so far (on a host that started empty)."""
        chains = [c for c in table.chains.values() if name is None or c.name == name]
        if not chains:
            return False
        if any(unread_parts(r) for c in chains for r in c.rules):  # rules stockade could not read are listed
            self.write_unknown(Unknown(f"iptables -S {name or ''}".rstrip(), 0, self.code))
            return None
        heads = [f"-P {c.name} {c.policy}" if c.builtin else f"-N {c.name}" for c in chains]
        rules = [f"-A {c.name} {' '.join(rule_words(r, family))}".rstrip() for c in chains for r in c.rules]
        self.write("".join(f"{line}\n" for line in heads + rules))
        return True

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
            numbered = action in ("insert", "replace", "delete") and len(after) > 1 and after[1].text.isdigit()
            if numbered or action in ("policy", "rename") and len(after) > 1:
                take = 2
        return [words[k], *after[:take], *words[:k], *after[take:]]

    # restore-format lines -------------------------------------------------------------------------

    def restore_line(self, line: str, origin: Origin, family: Family) -> None:
        """One iptables-restore line (its first character at `origin`), read as iptables-restore reads it."""
        stripped = line.strip()
        first = stripped.split()[0]
        col0 = origin.col - 1  # the column of line[0]
        pad = " " * col0
        try:
            if first.startswith("*"):
                self.restore_table[family] = table_of(self.b, family, Token(first[1:], Origin(
                    origin.file, origin.line, origin.col + 1)))
                return
            if first == "COMMIT":
                self.restore_table[family] = None
                return
            table = self.restore_table.get(family) or table_of(self.b, family, Token("filter", origin))
            if first.startswith(":"):
                chain_header(table, stripped, origin)
                return
            text = pad + line
            pos = col0 + len(line) - len(line.lstrip())
            if m := COUNTERS.match(text, pos):
                pos = m.end()  # a script has no use for packet counters
            words = split_line(text, origin.file, origin.line, pos)
            for w in words:
                if quote := next((c for c in w.text if c in TYPO_QUOTES), None):
                    self.b.diagnostics.append(typographic_quote(quote, w.text, w.origin))
            self.b.run(family, table, words, Origin(origin.file, origin.line, pos + 1))
        except ParseError as e:
            self.b.error(e, origin)

    def restore_stream(self, stream: Stream, family: Family, node) -> bool | None:
        """`iptables-restore <<EOF` or `< FILE`: the input is a restore file of its own."""
        if isinstance(stream.text, Unknown):
            if stream.text.why != "file":  # a missing file is reported where it is named
                self.note(f"`{self.snippet(node)}` loads rules from input stockade cannot read; they are unknown",
                          self.code.start(node), "give the rules in the script or the file with --include-path",
                          "warning", "unresolved-input")
            self.unknown_program(node, what=f"`{self.snippet(node)}` loads rules stockade cannot read")
            return None
        where = stream.where or (lambda o: self.origin(self.code.start(node)))
        self.restore_table[family] = None
        offset = 0
        for line in stream.text.split("\n"):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                indent = len(line) - len(line.lstrip())
                start = where(offset + indent)
                self.restore_line(line[indent:], start, family)
            offset += len(line) + 1
        self.restore_table[family] = None
        return True


def _count_commands(node) -> int:
    n, stack = 0, [node] if node is not None else []
    while stack:
        x = stack.pop()
        if x.type == "command":
            n += 1
        else:
            stack.extend(x.named_children)
    return n


def _table_option(args: list[Token]) -> tuple[Token | None, list[Token]]:
    """Take `-t TABLE` (also `--table`, `--table=T`, `-tT`), `-w`/`-W` and `-v` out of the words."""
    table: Token | None = None
    words: list[Token] = []
    i = 0
    while i < len(args):
        t = args[i]
        w = t.text
        if w in ("-w", "--wait", "-W", "--wait-interval"):
            i += 2 if i + 1 < len(args) and args[i + 1].text.replace(".", "").isdigit() else 1
            continue
        if w in ("-v", "--verbose"):  # iptables prints what it does; the rule is the same
            i += 1
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


def read_script(text: str, file: str, builder: Builder | None = None, how: Invocation | None = None) -> Builder:
    """Read a shell script or a pasted tutorial into `builder` (a new one if not given)."""
    b = builder or Builder()
    ScriptReader(text, file, b, how).read()
    add_ipsets(b.rulesets, b.sets)
    return b
