"""Bash text to a syntax tree with tree-sitter-bash, and offsets back to file:line:col.

tree-sitter counts bytes; everything else here counts characters, so each `Code`
converts. A `Code` is one piece of bash being run: a script file, a page's shell
lines, a sourced file or the string given to `eval`/`bash -c`; `origin` maps its
offsets to where the text was written.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from itertools import accumulate, pairwise

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from ...model import Origin

_PARSER = Parser(Language(tree_sitter_bash.language()))


class Source:
    """A file's text, with offsets turned into file:line:col."""

    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def origin(self, offset: int) -> Origin:
        i = bisect.bisect_right(self.line_starts, offset) - 1
        return Origin(self.file, i + 1, offset - self.line_starts[i] + 1)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)


class Code:
    """Bash text parsed once; `where(offset)` says where a character of it was written."""

    def __init__(self, text: str, where: Callable[[int], Origin], directory: str | None):
        self.text, self.where, self.directory = text, where, directory
        if text.isascii():
            self._chars = None
        else:  # byte offset -> char offset
            self._chars = list(accumulate(len(c.encode("utf-8", "surrogatepass")) for c in text))
        self.root = _PARSER.parse(text.encode("utf-8", "surrogatepass")).root_node
        for _ in range(100):
            glued = _glued_line(self)
            if glued is None:
                break
            # tree-sitter-bash 0.25 reads `a | b | c` NEWLINE `d | e && f` as one command whose words run
            # on into the next line; bash ends a command at the line break, so say so with `;` (same offsets)
            self.text = text = text[:glued] + ";" + text[glued + 1:]
            self.root = _PARSER.parse(text.encode("utf-8", "surrogatepass")).root_node

    def _char(self, byte: int) -> int:
        return byte if self._chars is None else bisect.bisect_right(self._chars, byte)

    def start(self, node: Node) -> int:
        return self._char(node.start_byte)

    def end(self, node: Node) -> int:
        return self._char(node.end_byte)

    def raw(self, node: Node) -> str:
        return self.text[self.start(node):self.end(node)]

    def origin(self, offset: int) -> Origin:
        return self.where(min(max(offset, 0), max(len(self.text) - 1, 0)))

    def line(self, offset: int) -> int:
        return self.origin(offset).line


def _glued_line(code: Code) -> int | None:
    """Offset of a line break inside a simple command's words, which bash never allows (the grammar
    sometimes joins two lines); None if there is none."""
    stack = [code.root]
    while stack:
        n = stack.pop()
        if n.type == "command":
            for a, b in pairwise(n.children):
                gap = code.text[code.end(a):code.start(b)]
                k = gap.find("\n")
                if k >= 0 and not gap[:k].rstrip(" \t").endswith("\\") and "<<" not in code.raw(n):
                    return code.end(a) + k
            continue
        stack.extend(n.children)
    return None


def kids(node: Node) -> list[Node]:
    """Named children without comments."""
    return [c for c in node.named_children if c.type != "comment"]


def child(node: Node, name: str) -> Node | None:
    return node.child_by_field_name(name)


def keyword(node: Node) -> str:
    """The first anonymous child's text (`while`/`until`, `for`/`select`, `local`/`export` ...)."""
    for c in node.children:
        if not c.is_named:
            return c.type
    return ""


def syntax_errors(root: Node, limit: int = 20) -> list[Node]:
    """ERROR and MISSING nodes, outermost first, without recursion (a tree may be thousands deep)."""
    out, stack = [], [root]
    while stack and len(out) < limit:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            out.append(n)
            continue
        if n.has_error:
            stack.extend(reversed(n.children))
    return out
