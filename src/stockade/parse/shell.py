"""Just enough POSIX sh to read firewall scripts: words, quotes, expansions and command lists.

The parser turns text into nodes (simple commands, `a && b | c` lists, for loops,
groups, functions, here-documents); script.py runs them. Every word keeps the
offset of each of its characters, so a value that came from `$VAR` points at
where `$VAR` was written.

Two hooks make it fit pasted tutorials, not only scripts:
- `kind_of_line(pos, end, expected)` is asked at the start of every line (and
  every recovered line, see `cuts`) whether it is shell, a restore-format line,
  a cron line, or prose to skip; prose is never lexed (its apostrophes are not quotes).
- `cuts` are offsets where a line break was lost; the lexer treats each as a newline.

Not supported (parsed only to find their extent): if/while/until/case, arithmetic,
globbing, brace expansion; `${...}` beyond `${NAME}` and `${NAME:-word}`.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Callable, Union

from ..model import Origin
from ..model.diagnostics import Diagnostic, ParseError, Token

BLANKS = " \t\r\u00a0\u2002\u2003\u2009\u202f"  # web pages indent and separate with no-break spaces
TYPO_QUOTES = "\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb"
RESERVED = {"if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
            "in", "{", "}", "!", "function"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SPECIAL = re.compile(r"[0-9@*#?$!-]")  # $1, $@, $# ...
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])(?:(:?)([-=])(.*))?", re.S)  # ${NAME}, ${NAME:-word}
_OPS = ("&&", "||", ";;", "<<-", "<<", ">>", ">&", "<&", "<>", ">|", "&>", ";", "&", "|", "(", ")", "<", ">")
_REDIRECT = re.compile(r"\d*(<<-|<<|>>|>&|<&|<>|>\||&>>|&>|<|>)")
REDIRECTS = {"<<-", "<<", ">>", ">&", "<&", "<>", ">|", "&>>", "&>", "<", ">"}


class Source:
    """The text being read, with offsets turned into file:line:col."""

    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def origin(self, offset: int) -> Origin:
        i = bisect.bisect_right(self.line_starts, offset) - 1
        return Origin(self.file, i + 1, offset - self.line_starts[i] + 1)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)


def typographic_quote(quote: str, word: str, origin: Origin) -> Diagnostic:
    """A curly quote where a shell (or iptables-restore) quote was meant: it stays in the value."""
    return Diagnostic("warning", "typographic-quote",
                      f"`{quote}` (U+{ord(quote):04X}) is a typographic quote, not a shell quote: "
                      f"it stays part of `{word}`", origin,
                      "write a plain `\"` or `'`; the text was probably pasted from a web page or word processor")


# -- words ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiteralChars:
    """Literal characters and the offset each came from; `quoted` ones are never split."""

    text: str
    offsets: tuple[int, ...]
    quoted: bool


@dataclass(frozen=True)
class Var:
    """`$NAME`, `${NAME}` or `${NAME:-default}` (colon: an empty value also takes the default)."""

    name: str
    offset: int
    quoted: bool
    default: LiteralChars | None = None
    colon: bool = False


@dataclass(frozen=True)
class Subst:
    """`$(...)`, backquotes or `$((...))`: output stockade cannot compute."""

    raw: str
    offset: int
    quoted: bool


Part = Union[LiteralChars, Var, Subst]


@dataclass(frozen=True)
class Word:
    parts: tuple[Part, ...]
    start: int
    end: int
    raw: str

    @property
    def literal(self) -> str | None:
        """The word's text if it is plain unquoted literal text (keywords must be)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], LiteralChars) and not self.parts[0].quoted:
            return self.parts[0].text
        return None

    def assignment(self) -> tuple[str, Word] | None:
        """(`NAME`, value word) for `NAME=value`, else None."""
        first = self.parts[0] if self.parts else None
        if not isinstance(first, LiteralChars) or first.quoted or not (m := ASSIGNMENT.match(first.text)):
            return None
        n = m.end()
        rest = LiteralChars(first.text[n:], first.offsets[n:], False)
        return m.group()[:-1], Word((rest, *self.parts[1:]), self.start + n, self.end, self.raw[n:])


# -- nodes ---------------------------------------------------------------------------------------

@dataclass
class HereDoc:
    delimiter: str
    strip_tabs: bool
    start: int = -1  # body offsets, filled in when the lexer reaches the body
    end: int = -1


@dataclass
class Simple:
    words: list[Word]
    redirects: list[tuple[str, Word]]
    heredoc: HereDoc | None
    start: int
    end: int


@dataclass
class AndOr:
    """`a && b || c | d`: items with the operator that joins each to the one before ("" first)."""

    items: list[tuple[str, Node]]


@dataclass
class For:
    var: str
    items: list[Word] | None  # None: no `in` list (iterates the positional parameters)
    body: list[Node]
    start: int
    end: int


@dataclass
class Group:
    body: list[Node]
    subshell: bool


@dataclass
class FuncDef:
    name: str
    body: Node
    start: int


@dataclass
class Unsupported:
    """A construct stockade does not evaluate (if, while, until, case); kept to report what it holds."""

    keyword: str
    body: list[Node]
    start: int
    end: int


@dataclass
class Line:
    """A line the shell does not read: a restore-format line or a cron entry (kind says which)."""

    kind: str
    start: int
    end: int


Node = Union[Simple, AndOr, For, Group, FuncDef, Unsupported, Line]


def simple_commands(nodes: list[Node]) -> list[Simple]:
    out: list[Simple] = []
    for n in nodes:
        if isinstance(n, Simple):
            out.append(n)
        elif isinstance(n, AndOr):
            out += simple_commands([x for _, x in n.items])
        elif isinstance(n, (For, Group, Unsupported)):
            out += simple_commands(n.body)
        elif isinstance(n, FuncDef):
            out += simple_commands([n.body])
    return out


# -- parser --------------------------------------------------------------------------------------

@dataclass
class _Tok:
    kind: str  # "word", "op", "newline", "eof"
    offset: int
    text: str = ""
    word: Word | None = None


@dataclass
class Parser:
    """Recursive descent over a character cursor; one token of lookahead."""

    src: Source
    kind_of_line: Callable[[int, int, frozenset[str]], str]
    cuts: list[int] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.text = self.src.text
        self.pos = 0
        self.peeked: _Tok | None = None
        self.cut_done = -1  # the cut whose newline was already produced
        self.line_start = True
        self.expect: list[frozenset[str]] = [frozenset()]
        self.heredocs: list[HereDoc] = []
        self.cutset = set(self.cuts)
        self.typo_line = 0

    def parse(self) -> list[Node]:
        return self.parse_list(frozenset())

    # lines ---------------------------------------------------------------------------------

    def line_end(self, pos: int) -> int:
        nl = self.text.find("\n", pos)
        nl = len(self.text) if nl < 0 else nl
        i = bisect.bisect_right(self.cuts, pos)
        return min(nl, self.cuts[i]) if i < len(self.cuts) else nl

    def _skip_lines(self) -> list[Node]:
        """At a line start: pass blank, comment and prose lines; collect restore and cron lines."""
        nodes: list[Node] = []
        text, n = self.text, len(self.text)
        while True:
            while self.pos < n and text[self.pos] in BLANKS:
                self.pos += 1
            if self.pos >= n:
                break
            if text[self.pos] == "\n":
                self.pos += 1
                continue
            end = self.line_end(self.pos)
            if text[self.pos] == "#":
                self.pos = end
                continue
            kind = self.kind_of_line(self.pos, end, self.expect[-1])
            if kind == "shell":
                break
            if kind != "prose":
                nodes.append(Line(kind, self.pos, end))
            self.pos = end
        self.cut_done = self.pos
        self.line_start = False
        return nodes

    # tokens --------------------------------------------------------------------------------

    def peek(self) -> _Tok:
        if self.peeked is None:
            self.peeked = self._lex()
        return self.peeked

    def take(self) -> _Tok:
        tok = self.peek()
        self.peeked = None
        if tok.kind == "newline":
            self.line_start = True
        return tok

    def _lex(self) -> _Tok:
        text, n = self.text, len(self.text)
        while True:
            while self.pos < n and (text[self.pos] in BLANKS or text.startswith("\\\n", self.pos)):
                self.pos += 2 if text[self.pos] == "\\" else 1
            p = self.pos
            if p in self.cutset and p != self.cut_done:
                self.cut_done = p
                return _Tok("newline", p)
            if p >= n:
                return _Tok("eof", p)
            c = text[p]
            if c == "\n":
                self.pos += 1
                self._read_heredocs()
                return _Tok("newline", p)
            if c == "#":
                self.pos = self.line_end(p)
                continue
            if m := _REDIRECT.match(text, p):
                self.pos = m.end()
                return _Tok("op", p, m.group(1))
            for op in _OPS:
                if text.startswith(op, p):
                    self.pos += len(op)
                    return _Tok("op", p, op)
            word = self._word()
            return _Tok("word", word.start, word.raw, word)

    def _word(self) -> Word:
        text, n, start = self.text, len(self.text), self.pos
        parts: list[Part] = []
        buf: list[str] = []
        offs: list[int] = []
        typo: int | None = None

        def flush() -> None:
            if buf:
                parts.append(LiteralChars("".join(buf), tuple(offs), False))
                buf.clear()
                offs.clear()

        while self.pos < n:
            p = self.pos
            c = text[p]
            if c in BLANKS or c == "\n" or c in ";&|()<>" or (p in self.cutset and p != start):
                break
            if c == "\\":
                if text.startswith("\\\n", p):
                    self.pos += 2
                    continue
                flush()
                if p + 1 < n:
                    parts.append(LiteralChars(text[p + 1], (p + 1,), True))
                self.pos += 2
            elif c == "'":
                flush()
                close = self._closing(p, "'")
                parts.append(LiteralChars(text[p + 1:close], tuple(range(p + 1, close)), True))
                self.pos = close + 1
            elif c == '"':
                flush()
                parts += self._double_quoted(p)
            elif c == "$" or c == "`":
                flush()
                parts.append(self._dollar(False))
            else:
                if c in TYPO_QUOTES and typo is None:
                    typo = p
                buf.append(c)
                offs.append(p)
                self.pos += 1
        flush()
        if typo is not None and self.src.line_of(typo) != self.typo_line:  # once for a pair of them
            self.typo_line = self.src.line_of(typo)
            self.diagnostics.append(typographic_quote(text[typo], text[start:self.pos], self.src.origin(typo)))
        return Word(tuple(parts), start, self.pos, text[start:self.pos])

    def _closing(self, p: int, quote: str) -> int:
        """Offset of the quote closing the one at p; a quote may span lines but not a blank line."""
        j = self.text.find(quote, p + 1)
        while quote == '"' and j > 0 and _escaped(self.text, j):
            j = self.text.find(quote, j + 1)
        if j < 0 or re.search(r"\n[ \t]*\n", self.text[p:j]):
            kind = "double" if quote == '"' else "single"
            raise ParseError(f"unbalanced {kind} quote: `{quote}` is never closed", code="unbalanced-quote",
                             token=Token(quote, self.src.origin(p)),
                             hint=f"close the quoted text with {quote}; an apostrophe in a word also opens a quote")
        return j

    def _double_quoted(self, p: int) -> list[Part]:
        close = self._closing(p, '"')
        text, parts = self.text, []
        buf: list[str] = []
        offs: list[int] = []
        self.pos = p + 1
        while self.pos < close:
            i = self.pos
            c = text[i]
            if c == "\\" and text[i + 1] in '$`"\\\n':
                if text[i + 1] != "\n":
                    buf.append(text[i + 1])
                    offs.append(i + 1)
                self.pos += 2
            elif c == "`" or (c == "$" and i + 1 < close):
                if buf:
                    parts.append(LiteralChars("".join(buf), tuple(offs), True))
                    buf, offs = [], []
                parts.append(self._dollar(True))
            else:
                buf.append(c)
                offs.append(i)
                self.pos += 1
        parts.append(LiteralChars("".join(buf), tuple(offs), True))  # keeps `""` as an empty field
        self.pos = close + 1
        return parts

    def _dollar(self, quoted: bool) -> Part:
        text, p = self.text, self.pos
        if text[p] == "`":
            close = p + 1
            while close < len(text) and text[close] != "`":
                close += 2 if text[close] == "\\" else 1
            return self._subst(p, min(close + 1, len(text)), quoted)
        if text.startswith("$(", p):  # also $((...))
            return self._subst(p, self._matching(p + 1), quoted)
        if text.startswith("${", p):
            close = text.find("}", p)
            if close < 0:
                raise ParseError("`${` is never closed", code="shell-syntax", token=Token("${", self.src.origin(p)),
                                 hint="write ${NAME}")
            inner = text[p + 2:close]
            m = _BRACED.fullmatch(inner)
            self.pos = close + 1
            if not m:
                return Subst(text[p:close + 1], p, quoted)
            default = None
            if m.group(3):
                d0 = p + 2 + m.start(4)
                default = LiteralChars(m.group(4), tuple(range(d0, d0 + len(m.group(4)))), quoted)
            return Var(m.group(1), p, quoted, default, bool(m.group(2)))
        m = NAME.match(text, p + 1) or SPECIAL.match(text, p + 1)
        if not m:
            self.pos += 1
            return LiteralChars("$", (p,), quoted)
        self.pos = m.end()
        return Var(m.group(), p, quoted)

    def _subst(self, p: int, end: int, quoted: bool) -> Subst:
        self.pos = end
        return Subst(self.text[p:end], p, quoted)

    def _matching(self, p: int) -> int:
        """Offset just past the `)` matching the `(` at p, skipping quoted text."""
        text, depth, i = self.text, 0, p
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c in "'\"":
                j = text.find(c, i + 1)
                i = len(text) if j < 0 else j + 1
                continue
            depth += (c == "(") - (c == ")")
            i += 1
            if depth == 0:
                return i
        raise ParseError("`$(` is never closed", code="shell-syntax", token=Token("$(", self.src.origin(p - 1)),
                         hint="close the command substitution with `)`")

    def _read_heredocs(self) -> None:
        """Here-document bodies start on the line after their `<<WORD`."""
        for doc in self.heredocs:
            doc.start = self.pos
            while self.pos < len(self.text):
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                line = self.text[self.pos:end]
                if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                    doc.end = self.pos
                    self.pos = min(end + 1, len(self.text))
                    break
                self.pos = end + 1
            else:
                doc.end = self.pos = len(self.text)
        self.heredocs.clear()

    # grammar -------------------------------------------------------------------------------

    def _error(self, message: str, offset: int, hint: str | None = None, code: str = "shell-syntax") -> ParseError:
        return ParseError(message, code=code, hint=hint, token=Token("", self.src.origin(offset)))

    def _keyword(self, tok: _Tok) -> str | None:
        return tok.word.literal if tok.kind == "word" and tok.word.literal in RESERVED else None

    def parse_list(self, terms: frozenset[str]) -> list[Node]:
        """Commands until EOF or one of `terms` (a reserved word, or `)` / `;;`), which is left unread."""
        nodes: list[Node] = []
        self.expect.append(terms)
        try:
            while True:
                if self.line_start and self.peeked is None:
                    nodes += self._skip_lines()
                try:
                    tok = self.peek()
                    if tok.kind == "eof" or (tok.kind == "op" and tok.text in terms) or self._keyword(tok) in terms:
                        break
                    if tok.kind == "newline" or (tok.kind == "op" and tok.text in (";", "&")):
                        self.take()
                        continue
                    nodes.append(self.and_or())
                    nxt = self.peek()
                    if not (nxt.kind in ("newline", "eof") or (nxt.kind == "op" and nxt.text in (";", "&"))
                            or nxt.text in terms):
                        raise self._error(f"unexpected `{nxt.text}`", nxt.offset)
                except ParseError as e:
                    self.diagnostics.append(e.diagnostic(self.src.origin(self.pos)))
                    self._resync()
        finally:
            self.expect.pop()
        return nodes

    def _resync(self) -> None:
        """After a syntax error, go on reading at the next line."""
        self.peeked = None
        self.pos = self.line_end(self.pos)
        self.line_start = True

    def and_or(self) -> Node:
        items: list[tuple[str, Node]] = [("", self.command())]
        while (tok := self.peek()).kind == "op" and tok.text in ("&&", "||", "|"):
            self.take()
            while self.peek().kind == "newline":
                self.take()
                self.line_start = False  # a continued command, not a new line to classify
            items.append((tok.text, self.command()))
        return items[0][1] if len(items) == 1 else AndOr(items)

    def _expect_word(self, word: str, opener: str, at: int) -> _Tok:
        tok = self.peek()
        if self._keyword(tok) != word:
            found = "the end of the text" if tok.kind == "eof" else f"`{tok.text or 'newline'}`"
            raise self._error(f"`{opener}` needs `{word}`, found {found}", at,
                              hint=f"complete the `{opener}` with `{word}`")
        return self.take()

    def _linebreaks(self) -> None:
        """Line breaks inside a construct's header (`for x in a b` NEWLINE `do`), where lines hold no commands."""
        while self.peek().kind == "newline":
            self.take()
            self.expect.append(frozenset({"do", "then", "in"}))
            try:
                self._skip_lines()
            finally:
                self.expect.pop()

    def command(self) -> Node:
        tok = self.peek()
        kw = self._keyword(tok)
        if tok.kind == "op" and tok.text == "(":
            self.take()
            body = self.parse_list(frozenset({")"}))
            if self.peek().text != ")":
                raise self._error("`(` is never closed", tok.offset)
            self.take()
            return Group(body, True)
        if kw == "!":
            self.take()
            return self.command()
        if kw == "{":
            self.take()
            body = self.parse_list(frozenset({"}"}))
            self._expect_word("}", "{", tok.offset)
            return Group(body, False)
        if kw == "for":
            return self._for()
        if kw in ("if", "while", "until", "case"):
            return self._unsupported(kw)
        if kw == "function":
            self.take()
            name = self.take()
            if self.peek().text == "(":
                self.take()
                self.take()
            return self._funcdef(name, tok.offset)
        if kw is not None:
            raise self._error(f"unexpected `{kw}`", tok.offset,
                              hint=f"`{kw}` ends a construct that was never opened")
        return self._simple()

    def _funcdef(self, name: _Tok, start: int) -> FuncDef:
        self._linebreaks()
        body = self.command()
        self.functions.add(name.text)
        return FuncDef(name.text, body, start)

    def _simple(self) -> Node:
        words: list[Word] = []
        redirects: list[tuple[str, Word]] = []
        heredoc = None
        start = self.peek().offset
        end = start
        while True:
            tok = self.peek()
            if tok.kind == "word":
                self.take()
                words.append(tok.word)
                end = tok.word.end
                if len(words) == 1 and tok.word.literal and NAME.fullmatch(tok.word.literal) \
                        and self.peek().text == "(":
                    self.take()
                    if self.take().text != ")":
                        raise self._error("a function definition needs `()`", tok.offset)
                    return self._funcdef(tok, start)
            elif tok.kind == "op" and tok.text in REDIRECTS:
                self.take()
                target = self.take()
                if target.kind != "word":
                    raise self._error(f"`{tok.text}` needs a file name", tok.offset)
                if tok.text in ("<<", "<<-"):
                    delim = "".join(p.text for p in target.word.parts if isinstance(p, LiteralChars))
                    heredoc = HereDoc(delim, tok.text == "<<-")
                    self.heredocs.append(heredoc)
                else:
                    redirects.append((tok.text, target.word))
                end = target.word.end
            else:
                break
        if not words and not redirects and heredoc is None:
            tok = self.peek()
            raise self._error(f"unexpected `{tok.text or tok.kind}`", tok.offset)
        return Simple(words, redirects, heredoc, start, end)

    def _for(self) -> For:
        start = self.take().offset
        name = self.take()
        if name.kind != "word" or not NAME.fullmatch(name.text):
            raise self._error("`for` needs a variable name", name.offset)
        items = None
        self._linebreaks()
        if self._keyword(self.peek()) == "in":
            self.take()
            items = []
            while self.peek().kind == "word":
                items.append(self.take().word)
        if self.peek().text == ";":
            self.take()
        self._linebreaks()
        self._expect_word("do", "for", start)
        body = self.parse_list(frozenset({"done"}))
        end = self._expect_word("done", "for", start).offset
        return For(name.text, items, body, start, end)

    def _unsupported(self, kw: str) -> Unsupported:
        start = self.take().offset
        body: list[Node] = []
        if kw == "case":
            self.take()
            self._linebreaks()
            self._expect_word("in", "case", start)
            while True:
                self._linebreaks()
                tok = self.peek()
                if self._keyword(tok) == "esac" or tok.kind == "eof":
                    break
                while (t := self.take()).kind != "eof" and t.text != ")":
                    pass
                body += self.parse_list(frozenset({";;", "esac"}))
                if self.peek().text == ";;":
                    self.take()
            end = self._expect_word("esac", "case", start).offset
            return Unsupported(kw, body, start, end)
        closer = "fi" if kw == "if" else "done"
        middle = ("then",) if kw == "if" else ("do",)
        body += self.parse_list(frozenset(middle))
        self._expect_word(middle[0], kw, start)
        branches = frozenset({"elif", "else", "fi"}) if kw == "if" else frozenset({"done"})
        while True:
            body += self.parse_list(branches)
            word = self._keyword(self.peek())
            if word == "elif":
                self.take()
                body += self.parse_list(frozenset({"then"}))
                self._expect_word("then", "elif", start)
            elif word == "else":
                self.take()
            else:
                break
        end = self._expect_word(closer, kw, start).offset
        return Unsupported(kw, body, start, end)


def _escaped(text: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


# -- expansion -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnknownValue:
    """A variable's value that came from a command substitution stockade cannot run."""

    raw: str  # the `$(...)` as written
    offset: int


class Unexpandable(Exception):
    """A word needs a value stockade cannot compute. A signal the script reader turns into a
    diagnostic, not an error for the user (so not a StockadeError)."""

    def __init__(self, unknown: UnknownValue, var: str | None, offset: int):
        super().__init__(unknown.raw)
        self.unknown, self.var, self.offset = unknown, var, offset


Value = Union[str, UnknownValue]
IFS = " \t\n"


def expand(word: Word, env: dict[str, Value], split: bool = True,
           unset: Callable[[str, int], None] | None = None) -> list[tuple[str, int]]:
    """The fields a word expands to, each with the offset of its first character.

    Unquoted expansions are split at blanks as the shell splits them with the default IFS;
    an unquoted expansion to nothing yields no field, `""` yields one empty field.
    """
    fields: list[tuple[str, int]] = []
    buf: list[str] = []
    start = -1
    keep = False  # a quoted part makes the field exist even if empty

    def end_field() -> None:
        nonlocal buf, start, keep
        if buf or keep:
            fields.append(("".join(buf), start))
        buf, start, keep = [], -1, False

    def add(c: str, off: int) -> None:
        nonlocal start
        if start < 0:
            start = off
        buf.append(c)

    for part in word.parts:
        if isinstance(part, LiteralChars):
            if part.quoted:
                keep = True
                if start < 0 and not part.text:
                    start = word.start
            for c, off in zip(part.text, part.offsets):
                add(c, off)
            continue
        if isinstance(part, Subst):
            raise Unexpandable(UnknownValue(part.raw, part.offset), None, part.offset)
        value = env.get(part.name)
        if isinstance(value, UnknownValue):
            raise Unexpandable(value, part.name, part.offset)
        if part.default is not None and (value is None or (part.colon and value == "")):
            value = part.default.text
        if value is None:
            if unset is not None:
                unset(part.name, part.offset)
            value = ""
        if part.quoted:
            keep = True
            if start < 0:
                start = part.offset
        for c in value:
            if split and not part.quoted and c in IFS:
                end_field()
            else:
                add(c, part.offset)
    end_field()
    if not split:
        return [("".join(f for f, _ in fields), fields[0][1] if fields else word.start)]
    return fields
