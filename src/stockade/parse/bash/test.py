"""`test`/`[` and `[[ ]]` on words already expanded; a file test is decided by a callback.

Each operand is a (value, pattern) pair: `pattern` is the operand as a regular
expression, its quoted parts literal, used right of `==`/`!=` (a glob) and `=~` (a
regex) in `[[ ]]`. A test whose answer stockade cannot know (a file outside the
script's directory, a value from a command it does not run) answers None.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from .arith import Arith, ArithError

UNARY_FILE = {"-e", "-f", "-d", "-r", "-w", "-x", "-s", "-L", "-h", "-b", "-c", "-p", "-S", "-g", "-u", "-k",
              "-O", "-G", "-N", "-a"}
INT_OPS = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
STR_OPS = {"=", "==", "!=", "<", ">", "=~"}
Operand = tuple[str | None, str | None]  # value (None: unknown), regex for pattern use
FileTest = Callable[[str, str], bool | None]


class TestError(Exception):
    """A malformed test: bash prints an error and the test fails (status 2)."""


def _int(s: str, arith: Callable[[str], int] | None) -> int:
    s = s.strip()
    if arith is not None:
        return arith(s)
    if not re.fullmatch(r"[-+]?\d+", s):
        raise TestError(f"`{s}`: integer expression expected")
    return int(s)


def _and(a: bool | None, b: Callable[[], bool | None]) -> bool | None:
    r = b()  # read (and decide) the right side even when the left decides: the words must be consumed
    return False if False in (a, r) else (None if None in (a, r) else True)


def _or(a: bool | None, b: Callable[[], bool | None]) -> bool | None:
    r = b()
    return True if True in (a, r) else (None if None in (a, r) else False)


class Test:
    """Recursive descent over the operands; `double` for `[[ ]]` (patterns, `&&`, `||`, arithmetic ints)."""

    def __init__(self, words: list[Operand], ops: list[bool], file_test: FileTest, double: bool,
                 arith: Callable[[str], int] | None = None):
        self.words, self.ops, self.file_test, self.double, self.i = words, ops, file_test, double, 0
        self.arith = arith if double else None
        self.AND, self.OR = ("&&", "||") if double else ("-a", "-o")

    def text(self, k: int) -> str | None:
        return self.words[k][0] if k < len(self.words) else None

    def is_op(self, k: int, *names: str) -> bool:
        return k < len(self.words) and (self.ops[k] or not self.double) and self.words[k][0] in names

    def run(self) -> bool | None:
        if not self.words:
            return False
        if not self.double and len(self.words) <= 4:
            return self.posix()
        v = self.disj()
        if self.i != len(self.words):
            raise TestError(f"unexpected `{self.text(self.i)}`")
        return v

    def posix(self) -> bool | None:
        """POSIX rules by argument count (what `[` really does with 1 to 4 words)."""
        w = [x[0] for x in self.words]
        n = len(w)
        if n == 1:
            return None if w[0] is None else w[0] != ""
        if n == 2:
            if w[0] == "!":
                r = Test(self.words[1:], self.ops[1:], self.file_test, False).posix()
                return None if r is None else not r
            return self.unary(w[0], self.words[1])
        if n == 3:
            if w[1] in STR_OPS - {"=~"} or w[1] in INT_OPS or w[1] in ("-a", "-o", "-nt", "-ot", "-ef"):
                if w[1] in ("-a", "-o"):
                    a = Test(self.words[:1], self.ops[:1], self.file_test, False).posix()
                    b = Test(self.words[2:], self.ops[2:], self.file_test, False).posix()
                    return _and(a, lambda: b) if w[1] == "-a" else _or(a, lambda: b)
                return self.binary(self.words[0], w[1], self.words[2])
            if w[0] == "!":
                r = Test(self.words[1:], self.ops[1:], self.file_test, False).posix()
                return None if r is None else not r
            if w[0] == "(" and w[2] == ")":
                return None if w[1] is None else w[1] != ""
            raise TestError(f"`{w[1]}`: binary operator expected")
        if w[0] == "!":
            r = Test(self.words[1:], self.ops[1:], self.file_test, False).posix()
            return None if r is None else not r
        if w[0] == "(" and w[3] == ")":
            return Test(self.words[1:3], self.ops[1:3], self.file_test, False).posix()
        v = self.disj()
        if self.i != len(self.words):
            raise TestError(f"unexpected `{self.text(self.i)}`")
        return v

    def disj(self) -> bool | None:
        v = self.conj()
        while self.is_op(self.i, self.OR):
            self.i += 1
            v = _or(v, self.conj)
        return v

    def conj(self) -> bool | None:
        v = self.neg()
        while self.is_op(self.i, self.AND):
            self.i += 1
            v = _and(v, self.neg)
        return v

    def neg(self) -> bool | None:
        if self.is_op(self.i, "!") and self.i + 1 < len(self.words):
            self.i += 1
            v = self.neg()
            return None if v is None else not v
        return self.primary()

    def primary(self) -> bool | None:
        k = self.i
        if self.is_op(k, "("):
            self.i += 1
            v = self.disj()
            if not self.is_op(self.i, ")"):
                raise TestError("`)` expected")
            self.i += 1
            return v
        if k + 2 < len(self.words) and self.is_binary(k + 1):
            self.i = k + 3
            return self.binary(self.words[k], self.words[k + 1][0] or "", self.words[k + 2])
        if k + 1 < len(self.words) and (self.text(k) or "").startswith("-") and len(self.text(k) or "") == 2 \
                and (self.ops[k] or not self.double):
            self.i = k + 2
            return self.unary(self.text(k) or "", self.words[k + 1])
        if k >= len(self.words):
            raise TestError("argument expected")
        self.i = k + 1
        v = self.words[k][0]
        return None if v is None else v != ""

    def is_binary(self, k: int) -> bool:
        t = self.text(k)
        return (self.ops[k] or not self.double) and t in STR_OPS | INT_OPS | {"-nt", "-ot", "-ef"}

    def unary(self, op: str, operand: Operand) -> bool | None:
        v = operand[0]
        if v is None:
            return None
        if op == "-n":
            return v != ""
        if op == "-z":
            return v == ""
        if op == "-v":
            return None
        if op == "-t":
            return False
        if op in UNARY_FILE:
            return self.file_test(op, v)
        raise TestError(f"`{op}`: unary operator expected")

    def binary(self, left: Operand, op: str, right: Operand) -> bool | None:
        a, b = left[0], right[0]
        if a is None or b is None:
            return None
        if op in ("=", "==", "!="):
            if self.double and right[1] is not None:
                same = re.fullmatch(right[1], a, re.DOTALL) is not None
            else:
                same = a == b
            return same if op != "!=" else not same
        if op == "=~":
            try:
                return re.search(right[1] if right[1] is not None else b, a) is not None
            except re.error:
                raise TestError(f"`{b}`: invalid regular expression") from None
        if op in ("<", ">"):
            return a < b if op == "<" else a > b
        if op in INT_OPS:
            try:
                x, y = _int(a, self.arith), _int(b, self.arith)
            except ArithError as e:
                raise TestError(str(e)) from None
            return {"-eq": x == y, "-ne": x != y, "-lt": x < y, "-le": x <= y, "-gt": x > y, "-ge": x >= y}[op]
        return None  # -nt -ot -ef: file times and identities are not known


def glob_regex(parts: list[tuple[str, bool]]) -> str:
    """A bash glob (its quoted parts literal) as a regular expression."""
    out = []
    for text, quoted in parts:
        if quoted:
            out.append(re.escape(text))
            continue
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                out.append(re.escape(text[i + 1]))
                i += 2
                continue
            if c == "*":
                out.append(".*")
            elif c == "?":
                out.append(".")
            elif c == "[":
                j = text.find("]", i + 2)
                if j < 0:
                    out.append(r"\[")
                else:
                    body = text[i + 1:j]
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    out.append("[" + body.replace("\\", "\\\\") + "]")
                    i = j
            else:
                out.append(re.escape(c))
            i += 1
    return "".join(out)


def arith_int(get, put) -> Callable[[str], int]:
    return lambda s: Arith(s, get, put).value()
