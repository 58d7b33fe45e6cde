"""Bash words: variables and arrays with dynamic scope, every `${...}` form, arithmetic, command
substitution, quoting and field splitting exactly as bash does them.

`${...}` is read from the text by hand (tree-sitter-bash splits some forms, such as `${x:$o}`); each
`$...` part inside it is handed back to the grammar on its own.
"""
from __future__ import annotations

import re

from tree_sitter import Node

from .arith import Arith
from .test import glob_regex
from .tree import Code, child, keyword, kids, syntax_errors
from .values import (
    CR,
    MAX_LOOP,
    MAX_STEPS,
    MAX_VALUE,
    NAME,
    Abort,
    Output,
    Piece,
    Status,
    Unknown,
    Unresolved,
    Var,
)


class Words:
    """The expansion half of `Shell` (run.py); it runs `$(...)` through the statement half."""

    # -- arithmetic ----------------------------------------------------------------------------

    def arith_get(self, name: str, index: int | None) -> str | None:
        v = self.lookup(name)
        if v is None:
            return None
        if isinstance(v.value, Unknown):
            raise Unresolved(v.value, name, v.value.offset)
        if isinstance(v.value, list):
            i = index or 0
            return v.value[i] if 0 <= i < len(v.value) else None
        if isinstance(v.value, dict):
            return v.value.get(str(index or 0))
        return v.value if not index else None

    def arith_put(self, name: str, index: int | None, value: int) -> None:
        if index is None:
            self.set_var(name, str(value), None)
        else:
            self.set_index(name, str(index), str(value))

    def arith(self, text: str, node: Node) -> int:
        expanded = self.expand_text(text, self.code.start(node))
        return Arith(expanded, self.arith_get, self.arith_put).value()

    def arith_status(self, text: str, node: Node) -> Status:
        return self.arith(text, node) != 0

    # -- variables ----------------------------------------------------------------------------

    def lookup(self, name: str) -> Var | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def scope_of(self, name: str) -> dict[str, Var]:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope
        return self.scopes[0]

    def set_var(self, name: str, value, node: Node | None, append: bool = False) -> None:
        if isinstance(value, str) and len(value) > MAX_VALUE:
            raise Abort(f"`{name}` would hold more than {MAX_VALUE} characters; stockade stops here",
                        self.code.start(node) if node is not None else 0, code="shell-limit")
        scope = self.scope_of(name)
        old = scope.get(name)
        if old is not None and "readonly" in old.attrs:
            self.report("error", "shell-error", f"`{name}` is readonly: bash refuses to change it",
                        self.code.start(node) if node is not None else 0)
            return
        if append and old is not None:
            if isinstance(old.value, list) and isinstance(value, list):
                value = old.value + value
            elif isinstance(old.value, list) and isinstance(value, str):
                value = [(old.value[0] if old.value else "") + value, *old.value[1:]]
            elif isinstance(old.value, str) and isinstance(value, list):
                value = [old.value, *value]
            elif isinstance(old.value, str) and isinstance(value, str):
                value = old.value + value
            elif isinstance(old.value, Unknown):
                value = old.value
            if isinstance(value, str) and len(value) > MAX_VALUE:
                raise Abort(f"`{name}` would hold more than {MAX_VALUE} characters; stockade stops here",
                            self.code.start(node) if node is not None else 0, code="shell-limit")
        if old is not None and isinstance(old.value, list) and isinstance(value, str) and not append:
            value = [value, *old.value[1:]]
        scope[name] = Var(value, old.attrs if old else set())

    def set_index(self, name: str, index: str, value: str) -> None:
        scope = self.scope_of(name)
        old = scope.get(name)
        if old is not None and isinstance(old.value, dict):
            old.value[index] = value
            return
        arr = list(old.value) if old is not None and isinstance(old.value, list) else (
            [old.value] if old is not None and isinstance(old.value, str) else [])
        try:
            i = int(index)
        except ValueError:
            i = 0
        if i > MAX_LOOP:
            raise Abort(f"array index {i} is larger than stockade follows", 0)
        while len(arr) <= i:
            arr.append(None)  # bash arrays are sparse: a gap is unset
        arr[i] = value
        scope[name] = Var(arr, old.attrs if old else set())

    def assign(self, node: Node, scopes, local: bool = False) -> None:
        name_node = child(node, "name")
        value_node = child(node, "value")
        append = any(c.type == "+=" for c in node.children)
        if name_node is None:
            return
        if name_node.type == "subscript":
            name = self.code.raw(child(name_node, "name"))
            idx = self.word(child(name_node, "index"))
            if not re.fullmatch(r"-?\d+", idx.strip()) and not self.is_assoc(name):
                idx = str(self.arith(idx, name_node))
            self.set_index(name, idx, self.word(value_node) if value_node is not None else "")
            return
        name = self.code.raw(name_node)
        if local:
            self.scopes[-1][name] = Var("", set())
        if value_node is None:
            value = ""
        elif value_node.type == "array":
            value = [f for el in kids(value_node) for f, _ in self.fields(el)]
            if "[" in self.code.raw(value_node) and any(el.type == "concatenation" and
                                                        self.code.raw(el).startswith("[") for el in kids(value_node)):
                value = self.keyed_array(value_node)
        else:
            try:
                value = self.word(value_node)
            except Unresolved as e:
                value = e.unknown
        self.set_var(name, value, node, append)

    def keyed_array(self, node: Node) -> dict[str, str] | list[str]:
        out: dict[str, str] = {}
        for el in kids(node):
            m = re.match(r"\[([^\]]*)\]=", self.code.raw(el))
            text = self.word(el)
            if m:
                out[m.group(1)] = text.split("=", 1)[1] if "=" in text else ""
        if all(k.isdigit() for k in out):
            arr: list[str] = []
            for k, v in sorted(out.items(), key=lambda kv: int(kv[0])):
                if int(k) > MAX_LOOP:  # the gap below it would be held element by element
                    raise Abort(f"array index {k[:20]} is larger than stockade follows", self.code.start(node))
                while len(arr) < int(k):
                    arr.append(None)
                arr.append(v)
            return arr
        return out

    def is_assoc(self, name: str) -> bool:
        v = self.lookup(name)
        return v is not None and isinstance(v.value, dict)

    def declaration(self, node: Node) -> Status:
        kw = keyword(node)
        local = kw in ("local", "declare", "typeset") and len(self.scopes) > 1
        flags: set[str] = set()
        words = [self.word(c) for c in kids(node)]
        if kw in ("declare", "typeset") and any(w.startswith("-") and ("f" in w or "F" in w) for w in words):
            names = [w for w in words if not w.startswith("-")]
            return all(n in self.functions for n in names)  # `declare -f NAME`: is it a function?
        for c in kids(node):
            if c.type == "variable_assignment":
                name_node = child(c, "name")
                name = self.code.raw(child(name_node, "name") if name_node.type == "subscript" else name_node)
                if "A" in flags:
                    (self.scopes[-1] if local else self.scopes[0]).setdefault(name, Var({}, set()))
                self.assign(c, self.scopes, local=local and name not in self.scopes[-1])
                self.mark_attrs(name, kw, flags)
            elif c.type in ("word", "variable_name", "concatenation", "simple_expansion", "string"):
                text = self.word(c)
                if text.startswith(("-", "+")) and c.type != "variable_name":
                    flags |= set(text[1:])
                    continue
                if NAME.fullmatch(text):
                    if local and text not in self.scopes[-1]:
                        self.scopes[-1][text] = Var({} if "A" in flags else ([] if "a" in flags else ""), set())
                    elif self.lookup(text) is None and ("a" in flags or "A" in flags):
                        self.scopes[0][text] = Var({} if "A" in flags else [], set())
                    self.mark_attrs(text, kw, flags)
        return True

    def mark_attrs(self, name: str, kw: str, flags: set[str]) -> None:
        v = self.lookup(name)
        if v is None:
            return
        if kw == "readonly" or "r" in flags:
            v.attrs.add("readonly")
        if kw == "export" or "x" in flags:
            v.attrs.add("export")

    def unset(self, names: list[str]) -> Status:
        for name in names:
            if name.startswith("-"):
                continue
            if name in self.functions and self.lookup(name) is None:
                self.functions.pop(name)
                continue
            scope = self.scope_of(name)
            if name in scope and "readonly" not in scope[name].attrs:
                del scope[name]
        return True

    # -- words ---------------------------------------------------------------------------------

    def word(self, node: Node) -> str:
        """The word as one string, not split (assignments, case words, [[ ]] operands)."""
        return "".join(p.text for p in self.pieces(node, False) if not p.brk).replace(CR, "\r") \
            if node is not None else ""

    def fields(self, node: Node) -> list[tuple[str, int]]:
        return [(f.replace(CR, "\r"), o) for f, o in self._fields(node)]

    def _fields(self, node: Node) -> list[tuple[str, int]]:
        """The fields a word expands to, split as bash splits them, each with its offset."""
        out: list[tuple[str, int]] = []
        cur: list[str] = []
        off, exists = -1, False
        ifs = self.ifs()
        ws = "".join(c for c in ifs if c in " \t\n")

        def end(force: bool = False) -> None:
            nonlocal cur, off, exists
            if cur or exists or force:
                out.append(("".join(cur), off))
            cur, off, exists = [], -1, False

        for p in self.pieces(node, False):
            if p.brk:
                end(True)
                continue
            if p.expanded and not p.quoted:
                i = 0
                while i < len(p.text):
                    c = p.text[i]
                    if c in ws:
                        if cur or exists:
                            end()
                    elif c in ifs:
                        end(True)
                    else:
                        if off < 0:
                            off = p.offset
                        cur.append(c)
                    i += 1
                continue
            if off < 0:
                off = p.offset
            if p.quoted:
                exists = True
            cur.append(p.text)
        end()
        if sum(len(f) for f, _ in out) > MAX_VALUE:
            raise Abort(f"a word expands to more than {MAX_VALUE} characters; stockade stops here",
                        self.code.start(node))
        return out

    def ifs(self) -> str:
        v = self.lookup("IFS")
        return " \t\n" if v is None or not isinstance(v.value, str) else v.value

    def _dollar_start(self, node: Node) -> int:
        s = self.code.start(node)
        text = self.code.text
        while s < len(text) and text[s] in " \t\n":
            s += 1
        return s

    def pieces(self, node: Node, quoted: bool) -> list[Piece]:
        t = node.type
        code = self.code
        s, e = code.start(node), code.end(node)
        raw = code.text[s:e]
        if t == "command_name" and node.named_children:
            return [p for c in node.named_children for p in self.pieces(c, quoted)] \
                if len(node.named_children) == 1 else self.concat(node, quoted)
        if t in ("word", "number", "variable_name", "extglob_pattern", "regex", "test_operator"):
            if quoted:
                return [Piece(raw, s, True, False)]
            self.literal(raw, s)
            return _unquoted_literal(raw, s)
        if t == "raw_string":
            return [Piece(raw[1:-1], s + 1, True, False)]
        if t == "ansi_c_string":
            return [Piece(_ansi_c(raw[2:-1]), s + 2, True, False)]
        if t in ("string", "translated_string"):
            start = s + (2 if t == "translated_string" else 1)
            out: list[Piece] = []
            pos = start
            for c in node.named_children:
                if c.type in ("simple_expansion", "expansion", "command_substitution", "arithmetic_expansion"):
                    cs = self._dollar_start(c)
                    if cs > pos:
                        out.append(Piece(_unescape_dq(code.text[pos:cs]), pos, True, False))
                    out += self.pieces(c, True)
                    pos = max(pos, code.end(c))
            if e - 1 > pos or not out:
                out.append(Piece(_unescape_dq(code.text[pos:max(pos, e - 1)]), pos, True, False))
            return out
        if t == "concatenation":
            return self.concat(node, quoted)
        return self.pieces_of_expansion(node, quoted)

    def concat(self, node: Node, quoted: bool) -> list[Piece]:
        code = self.code
        s = code.start(node)
        if True:
            out = []
            pos = s
            for c in node.children:
                cs = code.start(c)
                if code.end(c) <= pos:
                    continue
                if cs < pos:  # the rest of a child an expansion above already read (`${x:$o}`)
                    rest = code.text[pos:code.end(c)]
                    out += _unquoted_literal(rest, pos) if not quoted else [Piece(rest, pos, True, False)]
                else:
                    out += self.pieces(c, quoted)
                pos = max(pos, code.end(c), self.consumed)
            return out

    def pieces_of_expansion(self, node: Node, quoted: bool) -> list[Piece]:
        t = node.type
        code = self.code
        s, e = code.start(node), code.end(node)
        raw = code.text[s:e]
        if t == "simple_expansion":
            name = raw.lstrip()[1:]
            return self.param(name, None, "", "", quoted, self._dollar_start(node))
        if t == "expansion":
            return self.braced(node, quoted)
        if t == "command_substitution":
            return [Piece(self.substitute(node), self._dollar_start(node), quoted, True)]
        if t == "arithmetic_expansion":
            inner = raw.strip()
            inner = inner[3:-2] if inner.startswith("$((") else inner[2:-1]
            return [Piece(str(self.arith(inner, node)), self._dollar_start(node), quoted, True)]
        if t == "brace_expression":
            m = re.fullmatch(r"\{(-?\d+)\.\.(-?\d+)\}", raw)
            if m and not quoted:
                a, b = int(m.group(1)), int(m.group(2))
                step = 1 if b >= a else -1
                if abs(b - a) >= MAX_STEPS:  # more words than commands stockade runs: never made, nor cut short
                    raise Abort(f"`{raw[:40]}` would expand to more than {MAX_STEPS} words; stockade stops here",
                                s, code="shell-limit")
                nums = [str(n) for n in range(a, b + step, step)]
                out = []
                for k, n in enumerate(nums):
                    if k:
                        out.append(Piece("", s, False, False, brk=True))
                    out.append(Piece(n, s, False, False))
                return out
            return [Piece(raw, s, quoted, False)]
        if t == "process_substitution":
            raise Unresolved(Unknown(raw, s, code), None, s)
        return [Piece(raw, s, quoted, False)]

    consumed = -1  # end of the last `${...}` read by hand (tree-sitter splits `${x:$o}` in two)

    def braced(self, node: Node, quoted: bool) -> list[Piece]:
        """`${...}`, read from the text (the grammar's own split of operators is not reliable)."""
        code = self.code
        s = self._dollar_start(node)
        end = _brace_end(code.text, s + 1)
        if end < 0:
            raise Abort("`${` is never closed", s, code="shell-syntax")
        self.consumed = end + 1
        inner = code.text[s + 2:end]
        m = re.match(r"([#!]?)([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(\[[^\]]*\])?", inner)
        if not m or (m.group(1) == "#" and m.end() == 1):
            if inner == "#":
                return self.param("#", None, "", "", quoted, s)
            raise Abort(f"`${{{inner}}}`: bad substitution (bash stops the command)", s, code="shell-error")
        prefix, name, sub = m.group(1), m.group(2), m.group(3)
        if prefix == "#" and m.end() == len(inner) and name == "" :
            prefix, name = "", "#"
        rest = inner[m.end():]
        if prefix == "!" and sub in ("[@]", "[*]") and not rest:  # the keys of an array
            v = self.lookup(name)
            keys = [] if v is None else list(v.value) if isinstance(v.value, dict) else \
                [str(i) for i, x in enumerate(v.value) if x is not None] if isinstance(v.value, list) else ["0"]
            return self.param_list(keys, quoted, sub == "[*]", s)
        if prefix == "!" and rest in ("*", "@"):
            names = sorted(k for scope in self.scopes for k in scope if k.startswith(name))
            return [Piece(" ".join(names), s, quoted, True)]
        return self.param(name, sub[1:-1] if sub else None, prefix, rest, quoted, s, s + 2 + m.end())

    def param(self, name: str, index: str | None, prefix: str, op: str, quoted: bool, offset: int,
              op_offset: int = 0) -> list[Piece]:
        values, is_list, star = self.values(name, index, offset, quiet=bool(re.match(r":?[-=+?]", op)))
        if prefix == "!":  # indirection
            target = values[0] if values else ""
            if not re.fullmatch(r"[A-Za-z_]\w*(\[[^\]]*\])?|\d+", target or ""):
                raise Abort(f"`${{!{name}}}`: `{target}` is not a variable name", offset, code="shell-error")
            m = re.fullmatch(r"(\w+)(?:\[([^\]]*)\])?", target)
            values, is_list, star = self.values(m.group(1), m.group(2), offset)
        if prefix == "#":
            n = len(values) if is_list else len(values[0]) if values else 0
            return [Piece(str(n), offset, quoted, True)]
        if op:
            values = self.operate(name, index, values, is_list, op, offset, op_offset, quoted)
            if isinstance(values, Piece):
                return [values]
        if not is_list:
            return [Piece(values[0] if values else "", offset, quoted, True)]
        return self.param_list(values, quoted, star, offset)

    def param_list(self, values: list[str], quoted: bool, star: bool, offset: int) -> list[Piece]:
        if quoted and star:
            sep = self.ifs()[:1]
            return [Piece(sep.join(values), offset, True, True)]
        out: list[Piece] = []
        for k, v in enumerate(values):
            if k:
                out.append(Piece("", offset, quoted, True, brk=quoted) if quoted else Piece(" ", offset, False, True))
            out.append(Piece(v, offset, quoted, True))
        return out

    def values(self, name: str, index: str | None, offset: int, quiet: bool = False) -> tuple[list[str], bool, bool]:
        """(values, is a list, `*` rather than `@`) of a parameter; `quiet`: the word gives a default."""
        if name in ("@", "*") or name.isdigit():
            if (u := next((p for p in (self.params if not name.isdigit() else self.params[int(name) - 1:int(name)])
                           if isinstance(p, Unknown)), None)) is not None:
                raise Unresolved(u, None, offset)  # a function's argument stockade could not expand
        if name in ("@", "*"):
            return list(self.params), True, name == "*"
        if name == "#":
            return [str(len(self.params))], False, False
        if name == "?":
            return ["0" if self.last is not False else "1"], False, False
        if name == "$":
            return ["12345"], False, False
        if name == "0":
            return [self.script_name], False, False
        if name.isdigit():
            i = int(name)
            return ([self.params[i - 1]] if i <= len(self.params) else []), False, False
        if name in ("!", "-"):
            return [""], False, False
        v = self.lookup(name)
        if v is None and self.unknown_env is not None and NAME.fullmatch(name):
            raise Unresolved(self.unknown_env, name, offset)  # it may be set in a file that is not there
        if v is None:
            return [], index in ("@", "*"), index == "*"
        if isinstance(v.value, Unknown):
            raise Unresolved(v.value, name, offset)
        if index in ("@", "*"):
            vals = list(v.value.values()) if isinstance(v.value, dict) else (
                [x for x in v.value if x is not None] if isinstance(v.value, list) else [v.value])
            return vals, True, index == "*"
        if isinstance(v.value, dict):
            key = self.expand_text(index, offset) if index is not None else "0"
            return ([v.value[key]] if key in v.value else []), False, False
        if isinstance(v.value, list):
            i = 0 if index is None else Arith(self.expand_text(index, offset), self.arith_get,
                                                self.arith_put).value()
            if i < 0:
                i += len(v.value)
            return ([v.value[i]] if 0 <= i < len(v.value) and v.value[i] is not None else []), False, False
        if index not in (None, "0"):
            return [], False, False
        return [v.value], False, False

    def operate(self, name, index, values, is_list, op, offset, op_offset, quoted):
        set_ = bool(values)
        value = values[0] if values and not is_list else " ".join(values)
        m = re.match(r"(:?[-=?+])|(##|#|%%|%)|(//|/#|/%|/)|(:)|(\^\^|\^|,,|,)|(@)", op)
        if not m:
            raise Abort(f"`${{{name}{op}}}`: bad substitution (bash stops the command)", offset, code="shell-error")
        arg_text, arg_off = op[m.end():], op_offset + m.end()
        if m.group(1):
            kind = m.group(1)
            empty = not set_ or (kind.startswith(":") and value == "")
            if kind[-1] == "+":
                return [] if empty else [self.expand_text(arg_text, arg_off, quoted)]
            if not empty:
                return values
            word = self.expand_text(arg_text, arg_off, quoted)
            if kind[-1] == "=":
                self.set_var(name, word, None)
            elif kind[-1] == "?":
                raise Abort(f"`${name}` is not set: bash stops the script here ({word or 'parameter null or not set'})",
                            offset, code="shell-error")
            return [word]
        if m.group(2):
            regex = self.glob_of(arg_text, arg_off)
            greedy = len(m.group(2)) == 2
            out = []
            for v in values:
                if m.group(2)[0] == "#":
                    cands = range(len(v), -1, -1) if greedy else range(len(v) + 1)
                    out.append(next((v[k:] for k in cands if re.fullmatch(regex, v[:k], re.DOTALL)), v))
                else:
                    cands = range(len(v) + 1) if greedy else range(len(v), -1, -1)
                    out.append(next((v[:k] for k in cands if re.fullmatch(regex, v[k:], re.DOTALL)), v))
            return out
        if m.group(3):
            pat, _, rep = _split_unescaped(arg_text, "/")
            regex = self.glob_of(pat, arg_off)
            rep = self.expand_text(rep, arg_off, quoted)
            kind = m.group(3)
            out = []
            for v in values:
                if not pat:
                    out.append(v)
                elif kind == "//":
                    out.append(re.sub(f"(?s:{regex})", lambda _: rep, v) if regex else v)
                elif kind == "/#":
                    out.append(re.sub(f"(?s:^{regex})", lambda _: rep, v, count=1))
                elif kind == "/%":
                    out.append(re.sub(f"(?s:{regex})$", lambda _: rep, v, count=1))
                else:
                    out.append(re.sub(f"(?s:{regex})", lambda _: rep, v, count=1))
            return out
        if m.group(4):
            off_text, _, len_text = arg_text.partition(":")
            start = self.arith_expr(off_text, arg_off)
            if is_list and name in ("@", "*"):
                seq = [self.script_name, *self.params]
                seq = seq[start:] if start >= 0 else seq[len(seq) + start:]
                return seq if not _ else seq[:self.arith_expr(len_text, arg_off)]
            if is_list:
                seq = values[start:] if start >= 0 else values[len(values) + start:]
                return seq if not _ else seq[:self.arith_expr(len_text, arg_off)]
            if start < 0:
                start = max(len(value) + start, 0)
            if not _:
                return [value[start:]]
            n = self.arith_expr(len_text, arg_off)
            return [value[start:start + n] if n >= 0 else value[start:len(value) + n]]
        if m.group(5):
            f = {"^^": str.upper, ",,": str.lower, "^": lambda v: v[:1].upper() + v[1:],
                 ",": lambda v: v[:1].lower() + v[1:]}[m.group(5)]
            return [f(v) for v in values]
        return values  # ${x@Q} and friends: the value itself

    def arith_expr(self, text: str, offset: int) -> int:
        return Arith(self.expand_text(text, offset), self.arith_get, self.arith_put).value()

    def glob_of(self, text: str, offset: int) -> str:
        """A pattern written inside `${...}`, as a regex (quoted parts literal)."""
        return glob_regex([(p.text, p.quoted) for p in self.text_pieces(text, offset, False)])

    def expand_text(self, text: str, offset: int, quoted: bool = True) -> str:
        """Text inside `${...}` or `$((...))`: parameter, command and arithmetic expansion, quote removal."""
        if not any(c in text for c in "$`'\"\\"):
            return text
        return "".join(p.text for p in self.text_pieces(text, offset, quoted) if not p.brk)

    def text_pieces(self, text: str, offset: int, quoted: bool) -> list[Piece]:
        """A word written inside `${...}` (where the grammar's own reading is not reliable), read by hand:
        quotes and backslashes here, each `$...` or backquote part by the grammar on its own."""
        out: list[Piece] = []
        i, n, buf, start = 0, len(text), [], 0

        def flush() -> None:
            nonlocal buf
            if buf:
                out.append(Piece("".join(buf), offset + start, quoted, False))
                buf = []

        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                flush()
                if not quoted or text[i + 1] in '$`"\\':
                    out.append(Piece(text[i + 1], offset + i + 1, True, False))
                else:
                    out.append(Piece(text[i:i + 2], offset + i, True, False))
                i += 2
                start = i
            elif c == "'" and not quoted:
                flush()
                j = text.find("'", i + 1)
                j = n if j < 0 else j
                out.append(Piece(text[i + 1:j], offset + i + 1, True, False))
                i = j + 1
                start = i
            elif c == '"':  # quotes inside `${...}` are removed even within double quotes
                flush()
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                inner = self.text_pieces(text[i + 1:j], offset + i + 1, True)
                out += inner or [Piece("", offset + i, True, False)]
                i = j + 1
                start = i
            elif c in "$`":
                j = _dollar_end(text, i)
                if j <= i + 1 and c == "$":
                    if not buf:
                        start = i
                    buf.append(c)
                    i += 1
                    continue
                flush()
                out += self.segment(text[i:j], offset + i, quoted)
                i = j
                start = i
            else:
                if not buf:
                    start = i
                buf.append(c)
                i += 1
        flush()
        return out

    def segment(self, seg: str, offset: int, quoted: bool) -> list[Piece]:
        """One `$...` or backquoted part, parsed by the grammar on its own."""
        outer = self.code
        sub = Code("x=" + seg, lambda o: outer.origin(offset + max(o - 2, 0)), outer.directory)
        stmts = kids(sub.root)
        value = child(stmts[0], "value") if stmts and stmts[0].type == "variable_assignment" else None
        if value is None or syntax_errors(sub.root):
            raise Abort(f"cannot read `{seg}`", offset, code="shell-syntax")
        saved = self.code
        self.code = sub
        try:
            return [Piece(p.text, offset, p.quoted or quoted, p.expanded, p.brk) for p in self.pieces(value, quoted)]
        except (Unresolved, Abort) as e:  # offsets of the outer text
            e.offset = offset + max(e.offset - 2, 0)
            raise
        finally:
            self.code = saved

    def substitute(self, node: Node) -> str:
        """`$(...)`: run the commands in a subshell and take their output."""
        inner = kids(node)
        if len(inner) == 1 and inner[0].type == "file_redirect":  # $(< file)
            r = inner[0]
            dest = child(r, "destination") or kids(r)[-1]
            text = self.read_file(self.word(dest), self.code.start(dest))
            if isinstance(text, Unknown):
                raise Unresolved(Unknown(self.code.raw(node).strip(), self._dollar_start(node), self.code), None,
                                 self._dollar_start(node))
            return text.rstrip("\n")
        out = Output()
        self.outs.append(out)
        self.capturing += 1
        try:
            self.subshell(lambda: self.seq(inner))
        finally:
            self.outs.pop()
            self.capturing -= 1
        if out.unknown is not None:
            raw = self.code.raw(node).strip()
            raise Unresolved(Unknown(raw, self._dollar_start(node), self.code), None, self._dollar_start(node))
        text = "".join(out.parts).rstrip("\n")
        if len(text) > MAX_VALUE:
            raise Abort(f"`$(...)` outputs more than {MAX_VALUE} characters; stockade stops here",
                        self._dollar_start(node))
        return text

    def write(self, text: str) -> None:
        if self.outs:
            self.outs[-1].parts.append(text)

    def write_unknown(self, unknown: Unknown) -> None:
        if self.outs and self.outs[-1].unknown is None:
            self.outs[-1].unknown = unknown


def _dollar_end(text: str, i: int) -> int:
    """End of the `$...` or backquoted part starting at i."""
    n = len(text)
    if text[i] == "`":
        j = i + 1
        while j < n and text[j] != "`":
            j += 2 if text[j] == "\\" else 1
        return min(j + 1, n)
    if text.startswith("${", i):
        j = _brace_end(text, i + 1)
        return n if j < 0 else j + 1
    if text.startswith("$(", i):
        depth, j = 0, i + 1
        while j < n:
            c = text[j]
            if c in "'\"":
                k = text.find(c, j + 1)
                j = n if k < 0 else k + 1
                continue
            depth += (c == "(") - (c == ")")
            j += 1
            if depth == 0:
                return j
        return n
    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]").match(text, i + 1)
    return m.end() if m else i + 1


def _split_unescaped(text: str, sep: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], sep, text[i + 1:]
        i += 1
    return text, "", ""


def _brace_end(text: str, i: int) -> int:
    """Offset of the `}` closing the `{` at i, skipping quotes and nested `${`."""
    depth, j, n = 0, i, len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "'" and depth > 0:
            k = text.find("'", j + 1)
            j = n if k < 0 else k + 1
            continue
        if c == '"':
            k = j + 1
            while k < n and text[k] != '"':
                k += 2 if text[k] == "\\" else 1
            j = k + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _unquoted_literal(raw: str, start: int) -> list[Piece]:
    """An unquoted word's text: `\\x` is x (quoted), `\\` newline disappears."""
    if "\\" not in raw:
        return [Piece(raw, start, False, False)]
    out, buf, i, bstart = [], [], 0, start
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            if buf:
                out.append(Piece("".join(buf), bstart, False, False))
                buf = []
            if raw[i + 1] != "\n":
                out.append(Piece(raw[i + 1], start + i + 1, True, False))
            i += 2
            bstart = start + i
            continue
        buf.append(c)
        i += 1
    if buf:
        out.append(Piece("".join(buf), bstart, False, False))
    return out


def _unescape_dq(text: str, heredoc: bool = False) -> str:
    chars = '$`\\\n' if heredoc else '$`"\\\n'
    return re.sub(r"\\([" + re.escape(chars) + "])", lambda m: "" if m.group(1) == "\n" else m.group(1), text)


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f",
              "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _ansi_c(text: str) -> str:
    def rep(m: re.Match) -> str:
        s = m.group(1)
        if s in _C_ESCAPES:
            return _C_ESCAPES[s]
        if s[0] == "x":
            return chr(int(s[1:], 16))
        if s[0] in "01234567":
            return chr(int(s, 8) & 0xFF)
        return "\\" + s

    return re.sub(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", rep, text, flags=re.DOTALL)
