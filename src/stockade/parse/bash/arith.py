"""Bash arithmetic (`$((...))`, `((...))`, `let`, array indices) on 64-bit wrapping integers.

Evaluated on the expression's text after parameter expansion, as bash does; a name
in the expression is a variable whose value is itself evaluated as an expression.
"""
from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+#[0-9A-Za-z@_]+|\d+|[A-Za-z_]\w*|\*\*=?|<<=?|>>=?|&&|\|\||\+\+|--|"
                    r"[-+*/%&|^]=|[=!<>]=|[-+*/%<>&|^!~?:=(),\[\]])")
_BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%")]
_ASSIGN = {"=", "*=", "/=", "%=", "+=", "-=", "<<=", ">>=", "&=", "^=", "|="}


class ArithError(Exception):
    """An expression bash would refuse (or one stockade cannot evaluate)."""


def wrap(n: int) -> int:
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= 1 << 63 else n


def _number(tok: str) -> int:
    try:
        if "#" in tok:
            base, digits = tok.split("#", 1)
            return int(digits, int(base))
        if tok.startswith(("0x", "0X")):
            return int(tok, 16)
        if len(tok) > 1 and tok.startswith("0"):
            return int(tok, 8)
        return int(tok)
    except ValueError:
        raise ArithError(f"`{tok}` is not a number") from None


class Arith:
    """One expression; `get(name, index)` reads variables, `put(name, index, value)` assigns."""

    def __init__(self, text: str, get: Callable[[str, int | None], str | None],
                 put: Callable[[str, int | None, int], None], depth: int = 0):
        self.tokens: list[str] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or not m.group(1):
                raise ArithError(f"`{text[pos:].strip()[:20]}` is not arithmetic")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i, self.get, self.put, self.depth = 0, get, put, depth
        if depth > 64:
            raise ArithError("variables refer to each other too deeply")

    def value(self) -> int:
        if not self.tokens:
            return 0
        v = self.comma()
        if self.i < len(self.tokens):
            raise ArithError(f"syntax error near `{self.tokens[self.i]}`")
        return v

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ArithError(f"expected `{want}`" if want else "the expression ends too early")
        self.i += 1
        return tok

    def comma(self) -> int:
        v = self.assign()
        while self.peek() == ",":
            self.take()
            v = self.assign()
        return v

    def lvalue(self) -> tuple[str, int | None] | None:
        """A variable name (with an index) at the cursor followed by an assignment operator."""
        tok = self.peek()
        if tok is None or not re.fullmatch(r"[A-Za-z_]\w*", tok):
            return None
        j, index = self.i + 1, None
        if j < len(self.tokens) and self.tokens[j] == "[":
            depth, k = 0, j
            while k < len(self.tokens):
                depth += (self.tokens[k] == "[") - (self.tokens[k] == "]")
                if depth == 0:
                    break
                k += 1
            if k + 1 >= len(self.tokens) or self.tokens[k + 1] not in _ASSIGN:
                return None
            sub = Arith("", self.get, self.put, self.depth)
            sub.tokens = self.tokens[j + 1:k]
            index, j = sub.value(), k + 1
        if j < len(self.tokens) and self.tokens[j] in _ASSIGN:
            self.i = j
            return tok, index
        return None

    def assign(self) -> int:
        start = self.i
        target = self.lvalue()
        if target is None:
            self.i = start
            return self.ternary()
        op = self.take()
        rhs = self.assign()
        v = rhs if op == "=" else self.binary(op[:-1], self.var(*target), rhs)
        self.put(*target, v)
        return v

    def ternary(self) -> int:
        cond = self.level(0)
        if self.peek() != "?":
            return cond
        self.take()
        a = self.assign()
        self.take(":")
        b = self.assign()
        return a if cond else b

    def level(self, n: int) -> int:
        if n == len(_BINARY):
            return self.power()
        v = self.level(n + 1)
        while self.peek() in _BINARY[n]:
            op = self.take()
            v = self.binary(op, v, self.level(n + 1))
        return v

    def power(self) -> int:
        v = self.unary()
        if self.peek() == "**":
            self.take()
            e = self.power()
            if e < 0:
                raise ArithError("exponent less than 0")
            v = wrap(pow(v, e, 1 << 64))
        return v

    def unary(self) -> int:
        tok = self.peek()
        if tok in ("+", "-", "!", "~"):
            self.take()
            v = self.unary()
            return {"+": v, "-": wrap(-v), "!": int(not v), "~": wrap(~v)}[tok]
        if tok in ("++", "--"):
            self.take()
            name = self.take()
            v = wrap(self.var(name, None) + (1 if tok == "++" else -1))
            self.put(name, None, v)
            return v
        return self.postfix()

    def postfix(self) -> int:
        tok = self.take()
        if tok == "(":
            v = self.comma()
            self.take(")")
            return v
        if tok[0].isdigit():
            return wrap(_number(tok))
        if not re.fullmatch(r"[A-Za-z_]\w*", tok):
            raise ArithError(f"syntax error near `{tok}`")
        index = None
        if self.peek() == "[":
            self.take()
            index = self.comma()
            self.take("]")
        v = self.var(tok, index)
        if self.peek() in ("++", "--"):
            self.put(tok, index, wrap(v + (1 if self.take() == "++" else -1)))
        return v

    def var(self, name: str, index: int | None) -> int:
        raw = self.get(name, index)
        if raw is None or not raw.strip():
            return 0
        return Arith(raw, self.get, self.put, self.depth + 1).value()

    @staticmethod
    def binary(op: str, a: int, b: int) -> int:
        if op in ("/", "%"):
            if b == 0:
                raise ArithError("division by 0")
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
            return wrap(q if op == "/" else a - q * b)
        if op in ("<<", ">>"):
            return wrap(a << (b & 63)) if op == "<<" else a >> (b & 63)
        return wrap({"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b,
                     "&&": int(bool(a) and bool(b)), "||": int(bool(a) or bool(b)), "==": int(a == b),
                     "!=": int(a != b), "<": int(a < b), "<=": int(a <= b), ">": int(a > b),
                     ">=": int(a >= b)}[op])
