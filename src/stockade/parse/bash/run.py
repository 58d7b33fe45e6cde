"""Running a bash syntax tree statically, as bash would run it, without running any program.

`Shell` keeps what bash keeps (variables and arrays with dynamic scope, functions,
positional parameters, `set -e`, stdin of loops) and runs the builtins firewall
scripts use; every other command goes to `external`, which the script reader
overrides (iptables, iptables-restore, ...). Output of `echo`/`printf`/`cat` is
captured for `$(...)` and pipes, so `for ip in $(cat list)` and
`cat list | while read ip` read the list.

Never a guess: a value stockade cannot know (output of a program it does not
run, a file that is not there) is an `Unknown`; a word that needs one raises
`Unresolved`, and the caller reports what it skipped at the line. A condition
whose answer is unknown counts as true, as an unknown command counts as
successful: the `then` branch runs, `&&` goes on, `||` does not, a `case` takes
its first clause, a loop body runs once; each time a warning names the line
(`unresolved-condition`). Limits keep hostile scripts bounded: values of
1,000,000 characters, nesting and function calls 100 deep, 10,000 iterations of a
loop, 200,000 commands in all; past one, a positioned error and the construct is
left.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tree_sitter import Node

from ...model import Origin
from .arith import Arith, ArithError
from .test import Test, TestError, glob_regex
from .tree import Code, Source, child, keyword, kids, syntax_errors

CR = "\ue00d"  # a carriage return, which bash keeps in words and tree-sitter would drop as a blank
MAX_VALUE, MAX_DEPTH, MAX_LOOP, MAX_STEPS = 1_000_000, 100, 10_000, 200_000
WORDISH = {"word", "string", "raw_string", "ansi_c_string", "translated_string", "simple_expansion", "expansion",
           "command_substitution", "arithmetic_expansion", "concatenation", "number", "process_substitution",
           "brace_expression", "regex", "extglob_pattern", "test_operator", "variable_name"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RUNS_CODE = {"eval", "source", ".", "bash", "sh", "dash"}
TEXT_TOOLS = {"grep", "egrep", "fgrep", "cut", "awk", "tr", "head", "tail", "sort", "uniq", "wc", "basename",
              "dirname", "seq"}
PREFIXES = {"sudo", "doas", "nohup", "exec", "nice", "time", "command", "env", "builtin", "stdbuf", "timeout"}
FIREWALL_TOOLS = {"iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
                  "ip6tables-restore", "iptables-legacy", "ip6tables-legacy", "iptables-nft", "ip6tables-nft",
                  "ipset", "ip", "modprobe", "sysctl", "nft", "tc"}


@dataclass(frozen=True)
class Unknown:
    """A value stockade cannot compute: `raw` is what would produce it, at `offset` of `code`."""

    raw: str
    offset: int
    code: Code
    why: str = "command"  # "command", "file", "arith", "read"

    @property
    def line(self) -> int:
        return self.code.line(self.offset)


class Unresolved(Exception):
    """A word needs an Unknown; `var` names the variable that held it, if any."""

    def __init__(self, unknown: Unknown, var: str | None, offset: int):
        super().__init__(unknown.raw)
        self.unknown, self.var, self.offset = unknown, var, offset


class Abort(Exception):
    """A limit or a fatal error: the statement is left with a positioned error."""

    def __init__(self, message: str, offset: int, hint: str | None = None, code: str = "shell-limit"):
        super().__init__(message)
        self.message, self.offset, self.hint, self.code = message, offset, hint, code


class Exit(Exception):
    def __init__(self, status: bool | None):
        self.status = status


class Return(Exit):
    pass


class Loop(Exception):
    def __init__(self, n: int, brk: bool):
        self.n, self.brk = n, brk


@dataclass
class Var:
    value: str | list[str] | dict[str, str] | Unknown
    attrs: set[str] = field(default_factory=set)


@dataclass
class Stream:
    """A command's stdin: known text read line by line, or unknown."""

    text: str | Unknown
    pos: int = 0
    where: Callable[[int], Origin] | None = None  # where each character of the text was written, if known

    def readline(self) -> str | None | Unknown:
        if isinstance(self.text, Unknown):
            return self.text
        if self.pos >= len(self.text):
            return None
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end + 1
        line, self.pos = self.text[self.pos:end], end
        return line


@dataclass
class Output:
    parts: list[str] = field(default_factory=list)
    unknown: Unknown | None = None


@dataclass
class Piece:
    text: str
    offset: int
    quoted: bool
    expanded: bool  # from an expansion (split when unquoted) rather than literal text
    brk: bool = False  # ends the field ("$@" between parameters)


Status = bool | None


class Shell:
    """The interpreter; subclasses override `external`, `report` and the hooks below."""

    obey_exit = True

    def __init__(self, args: list[str] | None = None, env: dict[str, str] | None = None,
                 include_paths: list[str] | None = None):
        self.scopes: list[dict[str, Var]] = [{k: Var(v, {"export"}) for k, v in (env or {}).items()}]
        self.params: list[str] = list(args or [])
        self.script_name = "script"
        self.functions: dict[str, tuple[Node, Code]] = {}
        self.include_paths = list(include_paths or [])
        self.code: Code | None = None
        self.stdin: Stream | None = None
        self.outs: list[Output] = []
        self.errexit = False
        self.conditions = 0  # inside a condition: set -e does not apply
        self.depth = self.calls = self.steps = 0
        self.last: Status = True
        self.assumed: list[int] = []  # lines of unknown conditions the current commands depend on
        self.capturing = 0  # inside `$(...)` or `<(...)`: an unknown program there is reported by its use

    # -- hooks -----------------------------------------------------------------------------------

    def report(self, severity: str, code: str, message: str, offset: int, hint: str | None = None) -> None:
        raise NotImplementedError

    def external(self, fields: list[tuple[str, int]], node: Node, problem: Unresolved | None) -> Status:
        """A command that is not a builtin or a function; its output is unknown."""
        raise NotImplementedError

    def literal(self, text: str, offset: int) -> None:
        """Every unquoted literal word is shown here (the script reader warns about curly quotes)."""

    # -- running ---------------------------------------------------------------------------------

    def run_code(self, code: Code) -> Status:
        saved = self.code
        self.code = code
        try:
            for err in syntax_errors(code.root):
                self.syntax_error(err)
            return self.body(code.root)
        finally:
            self.code = saved

    def syntax_error(self, node: Node) -> None:
        start = self.code.start(node)
        if node.is_missing:
            self.report("error", "shell-syntax", f"`{node.type}` is missing here", start,
                        f"bash refuses the script at this line; add the `{node.type}`")
            return
        text = self.code.raw(node).strip().split("\n")[0][:40]
        self.report("error", "shell-syntax", f"bash cannot parse `{text}`", start,
                    "bash would refuse the whole script at this line; fix the syntax (stockade skipped this part)")

    def body(self, node: Node) -> Status:
        status: Status = True
        for c in kids(node):
            if c.type == "heredoc_body" or c.is_missing:
                continue
            if c.type == "ERROR" or c.has_error:
                self.before_error(c)
                if self.obey_exit:  # bash stops a script at a syntax error; a page goes on with its next line
                    raise Exit(False)
                continue
            status = self.exec(c)
        return status

    def before_error(self, node: Node) -> None:
        """The complete commands bash runs before it reaches the syntax error inside `node`."""
        if node.type != "ERROR":
            return
        for c in node.children:
            if c.type == "ERROR" or c.has_error:
                self.before_error(c)
                return
            if not c.is_named or c.type in ("word", "comment"):
                if c.is_named or c.type not in (";", "&", "\n"):
                    return
                continue
            self.exec(c)

    def exec(self, node: Node) -> Status:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Abort(f"more than {MAX_STEPS} commands run; stopped reading the script", self.code.start(node))
        if self.depth >= MAX_DEPTH:
            raise Abort(f"constructs nested (or functions called) more than {MAX_DEPTH} deep; left this one",
                        self.code.start(node), "stockade stops there instead of guessing", "shell-nesting")
        self.depth += 1
        try:
            status = self._exec(node)
        except Unresolved as e:
            self.cannot_expand(e, f"`{self.snippet(node)}`")
            status = None
        except (ArithError, TestError) as e:
            self.report("error", "shell-error", f"bash stops this command: {e}", self.code.start(node))
            status = False
        except Abort as e:
            if self.depth > 1:
                raise
            self.report("error", e.code, e.message, e.offset, e.hint)
            status = None
        finally:
            self.depth -= 1
        self.last = status
        return status

    def _exec(self, node: Node) -> Status:
        t = node.type
        if t == "command":
            status = self.simple(node)
            if status is False and self.errexit and not self.conditions:
                raise Exit(False)
            return status
        if t in ("program", "compound_statement", "do_group") and not self.code.raw(node).startswith("(("):
            return self.body(node)
        if t == "compound_statement":  # ((expr))
            return self.arith_status(self.code.raw(node)[2:-2], node)
        if t == "subshell":
            return self.subshell(lambda: self.body(node))
        if t == "list":
            return self.and_or(node)
        if t == "pipeline":
            return self.pipeline([c for c in kids(node)], None)
        if t == "negated_command":
            st = self.condition(lambda: self.body(node))
            return None if st is None else not st
        if t in ("variable_assignment", "variable_assignments"):
            for a in ([node] if t == "variable_assignment" else kids(node)):
                self.assign(a, self.scopes)
            return True
        if t == "declaration_command":
            return self.declaration(node)
        if t == "unset_command":
            return self.unset([self.word(w) for w in kids(node)])
        if t == "function_definition":
            name = self.code.raw(child(node, "name"))
            self.functions[name] = (child(node, "body"), self.code)
            return True
        if t == "if_statement":
            return self.if_statement(node)
        if t == "while_statement":
            return self.while_loop(node)
        if t == "for_statement":
            return self.for_loop(node)
        if t == "c_style_for_statement":
            return self.c_for(node)
        if t == "case_statement":
            return self.case(node)
        if t == "test_command":
            return self.test_command(node)
        if t == "redirected_statement":
            return self.redirected(node)
        if t in WORDISH:  # a lone word the grammar did not call a command
            return self.simple(node)
        return True

    def snippet(self, node: Node) -> str:
        text = " ".join(self.code.raw(node).replace("\\\n", " ").split())
        return text if len(text) <= 60 else text[:57] + "..."

    def subshell(self, fn) -> Status:
        saved = ([dict(s) for s in self.scopes], list(self.params), dict(self.functions), self.errexit)
        try:
            return fn()
        except Exit as e:
            return e.status
        finally:
            self.scopes, self.params, self.functions, self.errexit = saved
            self.scopes = [{k: Var(v.value, set(v.attrs)) for k, v in s.items()} for s in self.scopes]

    def condition(self, fn) -> Status:
        self.conditions += 1
        try:
            return fn()
        finally:
            self.conditions -= 1

    def assume(self, node: Node, what: str, choice: str) -> None:
        self.report("warning", "unresolved-condition",
                    f"cannot tell statically whether {what} `{self.snippet(node)}` holds; read as {choice}",
                    self.code.start(node),
                    "the rules read after this depend on this line; give the value with --arg/--env or in the script")

    # -- lists and pipelines ------------------------------------------------------------------

    def and_or(self, node: Node) -> Status:
        parts = node.children
        left, op, right = parts[0], parts[1].type, parts[-1]
        mark = self.mark()
        status = self.condition(lambda: self.exec(left))
        if op == "&&":
            if status is False:
                return False
        elif op == "||":
            if status is not False:
                return status
            self.handled(mark)
        else:
            return self.exec(right)
        return self.exec(right)

    def mark(self) -> int:
        return 0

    def handled(self, mark: int) -> None:
        """`a || b` after a failed a: the script handles that failure (the reader turns errors into notes)."""

    def pipeline(self, cmds: list[Node], stdin: Stream | None) -> Status:
        status: Status = True
        for k, cmd in enumerate(cmds):
            last = k == len(cmds) - 1
            out = Output()
            saved_in = self.stdin
            if stdin is not None:
                self.stdin = stdin
            if not last:
                self.outs.append(out)
            try:
                status = self.subshell(lambda: self.exec(cmd))
            finally:
                self.stdin = saved_in
                if not last:
                    self.outs.pop()
            stdin = Stream(out.unknown or "".join(out.parts))
        return status

    # -- redirections ---------------------------------------------------------------------------

    def redirected(self, node: Node) -> Status:
        body = child(node, "body")
        stdin, after = None, []
        discard = False
        for r in node.children:
            if r.type == "heredoc_redirect":
                stdin = self.heredoc(r)
                after = [c for c in kids(r) if c.type in ("pipeline", "list", "command")]
            elif r.type == "herestring_redirect":
                stdin = Stream(self.word(kids(r)[-1]) + "\n")
            elif r.type == "file_redirect":
                op = next((c.type for c in r.children if not c.is_named), "")
                dest = child(r, "destination") or (kids(r)[-1] if kids(r) else None)
                if op == "<" and dest is not None:
                    stdin = self.input_from(dest)
                elif op in (">", ">>", "&>", ">|", "&>>") and dest is not None:
                    discard = True
        if body is None:
            return True
        saved = self.stdin
        if stdin is not None:
            self.stdin = stdin
        if discard:
            self.outs.append(Output())
        try:
            if after:
                return self.heredoc_then(body, after)
            return self.exec(body)
        finally:
            self.stdin = saved
            if discard:
                self.outs.pop()

    def input_from(self, dest: Node) -> Stream:
        """`< FILE`, or `< <(commands)`: their output."""
        if dest.type == "process_substitution":
            out = Output()
            self.outs.append(out)
            self.capturing += 1
            try:
                self.subshell(lambda: self.seq(kids(dest)))
            finally:
                self.outs.pop()
                self.capturing -= 1
            return Stream(out.unknown or "".join(out.parts))
        return Stream(self.read_file(self.word(dest), self.code.start(dest)))

    def heredoc_then(self, body: Node, after: list[Node]) -> Status:
        """`cat <<EOF | cmd` and `cmd <<EOF && other`: the grammar puts the rest inside the redirection."""
        rest = after[0]
        if rest.type == "pipeline" or any(c.type == "|" for c in rest.children):
            cmds = [c for c in kids(rest)] if rest.type == "pipeline" else [rest]
            return self.pipeline([body, *cmds], self.stdin)
        status = self.exec(body)
        op = next((c.type for c in rest.parent.children if c.type in ("&&", "||")), "&&")
        if (op == "&&" and status is False) or (op == "||" and status is not False):
            return status
        return self.exec(rest)

    def heredoc(self, node: Node) -> Stream:
        doc = next((c for c in node.children if c.type == "heredoc_body"), None)
        start = next((c for c in node.children if c.type == "heredoc_start"), None)
        if doc is None:
            return Stream("")
        raw_start = self.code.raw(start) if start is not None else ""
        quoted = any(q in raw_start for q in "'\"\\")
        strip = any(c.type == "<<-" for c in node.children)
        s, e = self.code.start(doc), self.code.end(doc)
        code = self.code
        verbatim = quoted or not any(c.type != "heredoc_content" for c in doc.named_children)
        if verbatim:
            text = code.text[s:e]
        else:
            text = "".join(p.text for p in self.heredoc_pieces(doc, s, e))
        if strip:
            text = "\n".join(line.lstrip("\t") for line in text.split("\n"))
        return Stream(text, where=(lambda o: code.origin(s + o)) if verbatim and not strip else None)

    def heredoc_pieces(self, doc: Node, s: int, e: int) -> list[Piece]:
        out, pos = [], s
        for c in doc.named_children:
            if c.type in ("simple_expansion", "expansion", "command_substitution", "arithmetic_expansion"):
                cs = self._dollar_start(c)
                out.append(Piece(_unescape_dq(self.code.text[pos:cs], heredoc=True), pos, True, False))
                out += self.pieces(c, True)
                pos = self.code.end(c)
        out.append(Piece(_unescape_dq(self.code.text[pos:e], heredoc=True), pos, True, False))
        return out

    def read_file(self, name: str, offset: int) -> str | Unknown:
        """A file the script reads: relative to the script's directory, else on --include-path."""
        path = self.find_file(name)
        if path is None and self.capturing:  # reported where the output is used
            return Unknown(f"< {name}", offset, self.code, "file")
        if path is None:
            self.report("warning", "unresolved-file",
                        f"`{name}` is not there to read ({self.where_looked(name)}); what the script reads "
                        "from it is unknown", offset, "give its directory with --include-path DIR")
            return Unknown(f"< {name}", offset, self.code, "file")
        try:
            text = path.read_bytes()[:MAX_VALUE].decode("utf-8", "replace")
        except OSError as e:
            self.report("warning", "unresolved-file", f"cannot read `{name}`: {e.strerror}", offset)
            return Unknown(f"< {name}", offset, self.code, "file")
        return text

    def find_file(self, name: str) -> Path | None:
        if not name or "\0" in name:
            return None
        candidates = []
        p = Path(name)
        if not p.is_absolute():
            if self.code is not None and self.code.directory is not None:
                candidates.append(Path(self.code.directory) / p)
            candidates += [Path(d) / p for d in self.include_paths]
        else:
            candidates += [Path(d) / p.relative_to("/") for d in self.include_paths]
            candidates += [Path(d) / p.name for d in self.include_paths]
        for c in candidates:
            try:
                if c.is_file():
                    return c
            except OSError:
                continue
        return None

    def where_looked(self, name: str) -> str:
        if Path(name).is_absolute() and not self.include_paths:
            return "an absolute path names a file on the machine the script runs on"
        where = [self.code.directory] if self.code and self.code.directory and not Path(name).is_absolute() else []
        return "looked in " + (", ".join(map(str, where + self.include_paths)) or "no directory")

    # -- compound commands ------------------------------------------------------------------

    def if_statement(self, node: Node) -> Status:
        clauses: list[tuple[list[Node], list[Node]]] = []
        cond: list[Node] = []
        body: list[Node] = []
        in_cond = True
        for c in node.children:
            if c.type in ("if", "elif"):
                in_cond = True
            elif c.type == "then":
                in_cond = False
            elif c.type in ("elif_clause", "else_clause"):
                continue
            elif c.is_named and c.type != "comment":
                (cond if in_cond else body).append(c)
        clauses.append((cond, body))
        for c in node.children:
            if c.type == "elif_clause":
                cond, body, in_cond = [], [], True
                for d in c.children:
                    if d.type == "then":
                        in_cond = False
                    elif d.is_named and d.type != "comment":
                        (cond if in_cond else body).append(d)
                clauses.append((cond, body))
            elif c.type == "else_clause":
                clauses.append(([], [d for d in kids(c)]))
        for cond, body in clauses:
            if cond:
                status = self.condition(lambda: self.seq(cond))
                if status is False:
                    continue
                if status is None:
                    self.assume(cond[0], "the condition", "true (the `then` branch runs)")
                    return self.assumed_run(cond[0], lambda: self.seq(body))
            return self.seq(body)
        return True

    def assumed_run(self, node: Node, fn) -> Status:
        self.assumed.append(self.code.line(self.code.start(node)))
        try:
            return fn()
        finally:
            self.assumed.pop()

    def seq(self, nodes: list[Node]) -> Status:
        status: Status = True
        for n in nodes:
            if n.type != "heredoc_body":
                status = self.exec(n)
        return status

    def loop_body(self, body: Node) -> bool:
        """Run a loop body once; False when `break` leaves the loop."""
        try:
            self.exec(body)
        except Loop as e:
            if e.n > 1:
                raise Loop(e.n - 1, e.brk)
            return not e.brk
        return True

    def while_loop(self, node: Node) -> Status:
        until = keyword(node) == "until"
        cond = [c for c in kids(node) if c.type != "do_group"]
        body = child(node, "body") or next(c for c in kids(node) if c.type == "do_group")
        for n in range(MAX_LOOP + 1):
            if n == MAX_LOOP:
                raise Abort(f"the loop ran {MAX_LOOP} times; stockade stopped it", self.code.start(node),
                            code="shell-loop")
            status = self.condition(lambda: self.seq(cond))
            if status is None:
                self.assume(cond[0] if cond else node, "the loop condition",
                            "true once (the body is read one time)")
                self.assumed_run(node, lambda: self.loop_body(body))
                return True
            if status == until:
                return True
            if not self.loop_body(body):
                return True
        return True

    def for_loop(self, node: Node) -> Status:
        var = self.code.raw(child(node, "variable"))
        body = child(node, "body")
        values = [c for c in node.children_by_field_name("value")]
        if any(c.type == "in" for c in node.children):
            items = [f for v in values for f, _ in self.fields(v)]
        else:
            items = list(self.params)
        if keyword(node) == "select":
            self.report("warning", "unresolved-condition", "`select` waits for a user's choice; its body is read "
                        "once with the first item", self.code.start(node))
            items = items[:1]
        for n, value in enumerate(items):
            if n == MAX_LOOP:
                raise Abort(f"the loop ran {MAX_LOOP} times; stockade stopped it", self.code.start(node),
                            code="shell-loop")
            self.set_var(var, value, node)
            if not self.loop_body(body):
                break
        return True

    def c_for(self, node: Node) -> Status:
        raw = self.code.raw(node)
        m = re.match(r"for\s*\(\((.*?)\)\)", raw, re.S)
        parts = _split_top(m.group(1) if m else "", ";")
        if len(parts) != 3:
            raise Abort("cannot read this `for ((...))` header", self.code.start(node), code="shell-syntax")
        init, cond, step = parts
        body = child(node, "body") or next(c for c in kids(node) if c.type in ("do_group", "compound_statement"))
        self.arith(init, node)
        for n in range(MAX_LOOP + 1):
            if n == MAX_LOOP:
                raise Abort(f"the loop ran {MAX_LOOP} times; stockade stopped it", self.code.start(node),
                            code="shell-loop")
            if cond.strip() and not self.arith(cond, node):
                break
            if not self.loop_body(body):
                break
            self.arith(step, node)
        return True

    def case(self, node: Node) -> Status:
        subject = self.word(child(node, "value"))
        items = [c for c in node.children if c.type == "case_item"]
        matched = False
        for item in items:
            pats = item.children_by_field_name("value")
            stmts = [c for c in kids(item) if c not in pats]
            if not matched:
                for p in pats:
                    ok = self.pattern_match(subject, p)
                    if ok is None:
                        self.assume(node, "the `case` word", "matching its first clause")
                        ok = True
                    if ok:
                        matched = True
                        break
            if matched:
                status = self.assumed_run(node, lambda: self.seq(stmts)) if False else self.seq(stmts)
                term = child(item, "termination") or next((c for c in item.children if c.type in
                                                           (";;", ";&", ";;&")), None)
                kind = term.type if term is not None else ";;"
                if kind == ";;":
                    return status
                if kind == ";;&":
                    matched = False
        return True

    def pattern_match(self, subject: str, pat: Node) -> bool | None:
        regex = self.pattern(pat)
        return re.fullmatch(regex, subject, re.S) is not None

    def pattern(self, node: Node) -> str:
        """A glob operand as a regex: its quoted parts literal."""
        if node.type in ("extglob_pattern", "regex", "word") and "$" not in self.code.raw(node):
            return glob_regex([(self.code.raw(node), False)])
        parts = [(p.text, p.quoted) for p in self.pieces(node, False)]
        return glob_regex(parts)

    # -- tests --------------------------------------------------------------------------------

    def test_command(self, node: Node) -> Status:
        double = self.code.raw(node).startswith("[[")
        leaves = list(self.leaves(node))[1:-1]
        if not double:
            return self.test([w for leaf in leaves for w in self.leaf_fields(leaf)], node)
        operands, ops = [], []
        for k, leaf in enumerate(leaves):
            if isinstance(leaf, str):
                operands.append((leaf, None))
                ops.append(True)
                continue
            prev = leaves[k - 1] if k else None
            try:
                value = self.word(leaf)
            except Unresolved as e:
                self.cannot_expand(e, "its value in the test (the test is decided without it where it can be)")
                operands.append((None, None))
                ops.append(False)
                continue
            regex = None
            if prev in ("==", "!=", "="):
                regex = self.pattern(leaf)
            elif prev == "=~":
                regex = "".join(re.escape(p.text) if p.quoted else p.text for p in self.pieces(leaf, False))
            operands.append((value, regex))
            ops.append(leaf.type == "test_operator")
        arith = lambda s: Arith(s, self.arith_get, self.arith_put).value()  # noqa: E731
        return Test(operands, ops, self.file_test, True, arith).run()

    def leaves(self, node: Node):
        stack = [node]
        while stack:
            n = stack.pop()
            if n.type in WORDISH and n.type != "test_operator" or (n.type == "test_operator"):
                yield n if n.type != "test_operator" else self.code.raw(n)
            elif not n.is_named:
                yield n.type
            else:
                stack.extend(reversed(n.children))

    def leaf_fields(self, leaf) -> list[tuple[str | None, None]]:
        """A `[` operand's words; a quoted one whose value is unknown is one unknown word (the test may
        still be decided, as `[ -z x -a "$(...)" ]` is)."""
        if isinstance(leaf, str):
            return [(leaf, None)]
        try:
            return [(f, None) for f, _ in self.fields(leaf)]
        except Unresolved as e:
            if leaf.type not in ("string", "raw_string"):
                raise
            self.cannot_expand(e, "its value in the test (the test is decided without it where it can be)")
            return [(None, None)]

    def test(self, words: list, node: Node) -> Status:
        return Test(words, [False] * len(words), self.file_test, False).run()

    def file_test(self, op: str, name: str) -> bool | None:
        """A file test: known for files beside the script, and for the firewall tools (the script is meant for
        a host that has them); unknown for other files of the machine the script runs on."""
        base = name.rsplit("/", 1)[-1]
        if base in FIREWALL_TOOLS and op in ("-e", "-f", "-x", "-r", "-s"):
            return True
        if name.startswith("/proc/") or name.startswith("/sys/"):
            return None
        path = self.find_file(name) if op != "-d" else None
        if path is not None:
            if op in ("-e", "-f", "-r", "-a"):
                return True
            if op == "-s":
                return path.stat().st_size > 0
            if op == "-x":
                return os.access(path, os.X_OK)
            return None
        if op == "-d" and not Path(name).is_absolute() and self.code.directory:
            return (Path(self.code.directory) / name).is_dir()
        if not Path(name).is_absolute() and op in ("-e", "-f", "-r", "-s", "-a"):
            return False  # a file beside the script that is not there
        return None

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
                nums = [str(n) for n in range(a, b + step, step)][:MAX_LOOP]
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
                    cands = range(len(v), -1, -1) if greedy else range(0, len(v) + 1)
                    out.append(next((v[k:] for k in cands if re.fullmatch(regex, v[:k], re.S)), v))
                else:
                    cands = range(0, len(v) + 1) if greedy else range(len(v), -1, -1)
                    out.append(next((v[:k] for k in cands if re.fullmatch(regex, v[k:], re.S)), v))
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

    # -- simple commands -----------------------------------------------------------------------

    def simple(self, node: Node) -> Status:
        assigns = [c for c in node.children if c.type == "variable_assignment"]
        name = child(node, "name")
        words = ([name] if name is not None else []) + [c for c in node.children_by_field_name("argument")]
        if node.type in WORDISH:
            words = [node]
        stdin = None
        for r in node.children_by_field_name("redirect"):
            if r.type == "herestring_redirect":
                stdin = Stream(self.word(kids(r)[-1]) + "\n")
            elif r.type == "file_redirect":
                op = next((c.type for c in r.children if not c.is_named), "")
                dest = child(r, "destination") or (kids(r)[-1] if kids(r) else None)
                if op == "<" and dest is not None:
                    stdin = self.input_from(dest)
        if not words:
            for a in assigns:
                self.assign(a, self.scopes)
            return True
        fields: list[tuple[str, int]] = []
        problem = None
        for w in words:
            try:
                fields += self.fields(w[0] if isinstance(w, tuple) else w)
            except Unresolved as e:
                problem = e
                break
        saved_in = self.stdin
        if stdin is not None:
            self.stdin = stdin
        self.scopes.append({})
        try:
            for a in assigns:
                n = child(a, "name")
                if n is not None:
                    self.scopes[-1][self.code.raw(n)] = Var("", {"export"})
                self.assign(a, self.scopes)
            return self.command(fields, node, problem)
        finally:
            self.scopes.pop()
            self.stdin = saved_in

    def command(self, fields: list[tuple[str, int]], node: Node, problem: Unresolved | None) -> Status:
        if not fields:
            if problem is not None:
                self.cannot_expand(problem, f"`{self.snippet(node)}`")
            return True if problem is None else None
        name = fields[0][0]
        if problem is None and name in self.functions:
            return self.call(name, fields, node)
        builtin = getattr(self, "b_" + name.replace("-", "_").replace(".", "dot").replace(":", "colon")
                          .replace("[", "bracket"), None) if re.fullmatch(r"[\w.:\[-]+", name) else None
        if name in TEXT_TOOLS and not self.outs and not self.conditions:
            builtin = None  # its output goes nowhere stockade reads: just a command to note
        if builtin is not None and (problem is None or name in ("echo", "printf", ":", "true", "logger")):
            if problem is not None:
                self.write_unknown(problem.unknown)
                return True
            return builtin(fields, node)
        if problem is not None and (name in PREFIXES or name in RUNS_CODE):  # what it would run is unknown
            self.cannot_expand(problem, f"`{self.snippet(node)}`")
            return None
        if problem is None and name in PREFIXES:
            return self.prefixed(fields, node)
        if problem is None and name in ("bash", "sh", "dash") and len(fields) > 1:
            return self.sub_shell(fields, node)
        self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
        return self.external(fields, node, problem)

    def call(self, name: str, fields: list[tuple[str, int]], node: Node) -> Status:
        body, code = self.functions[name]
        self.calls += 1
        if self.calls > MAX_DEPTH:
            self.calls -= 1
            raise Abort(f"functions call each other more than {MAX_DEPTH} deep; stockade stops this call",
                        self.code.start(node), code="shell-nesting")
        saved = (self.params, self.code)
        self.params = [f for f, _ in fields[1:]]
        self.code = code
        self.scopes.append({})
        try:
            return self.exec(body)
        except Return as r:
            return r.status
        finally:
            self.scopes.pop()
            self.params, self.code = saved
            self.calls -= 1

    def prefixed(self, fields: list[tuple[str, int]], node: Node) -> Status:
        name, rest = fields[0][0], fields[1:]
        if name == "command" and rest and rest[0][0] in ("-v", "-V"):
            return self.which(rest[1:])
        if name == "env":
            while rest and (rest[0][0].startswith("-") or "=" in rest[0][0]):
                if "=" in rest[0][0] and NAME.fullmatch(rest[0][0].split("=", 1)[0]):
                    k, v = rest[0][0].split("=", 1)
                    self.scopes[-1][k] = Var(v, {"export"})
                elif rest[0][0] in ("-u", "-C", "-S") and len(rest) > 1:
                    rest = rest[1:]
                rest = rest[1:]
        elif name in ("sudo", "doas", "nice", "stdbuf"):
            takes = {"-u", "-g", "-n", "-C", "-h", "-p", "-r", "-t", "-U", "-i", "-o", "-e"} if name != "sudo" else \
                {"-u", "-g", "-C", "-h", "-p", "-r", "-t", "-U", "-D"}
            while rest and rest[0][0].startswith("-"):
                flag = rest[0][0]
                rest = rest[1:]
                if flag == "--":
                    break
                if flag in takes and rest:
                    rest = rest[1:]
        elif name == "timeout":
            while rest and rest[0][0].startswith("-"):
                rest = rest[1:]
            rest = rest[1:]
        elif name in ("command", "builtin", "exec", "time"):
            while rest and rest[0][0].startswith("-"):
                rest = rest[1:]
        if not rest:
            return True
        if name in ("command", "builtin") and rest[0][0] in self.functions:
            saved = self.functions.pop(rest[0][0])
            try:
                status = self.command(rest, node, None)
            finally:
                self.functions[rest[0][0]] = saved
        else:
            status = self.command(rest, node, None)
        if name == "exec" and self.obey_exit:
            raise Exit(status)
        return status

    def which(self, names: list[tuple[str, int]]) -> Status:
        status: Status = True
        for n, _ in names:
            if n in self.functions or hasattr(self, "b_" + n):
                self.write(n + "\n")
            elif n.rsplit("/", 1)[-1] in FIREWALL_TOOLS:
                self.write((n if "/" in n else f"/usr/sbin/{n}") + "\n")
            else:
                self.write_unknown(Unknown(f"command -v {n}", 0, self.code))
                status = None
        return status

    def sub_shell(self, fields: list[tuple[str, int]], node: Node) -> Status:
        args = fields[1:]
        while args and args[0][0].startswith("-") and args[0][0] != "-c":
            args = args[1:]
        if args and args[0][0] == "-c" and len(args) > 1:
            text, off = args[1]
            params = [f for f, _ in args[3:]]
            return self.run_string(text, off, params)
        if args:
            path = self.find_file(args[0][0])
            if path is None:
                self.report("warning", "unresolved-file", f"runs the script `{args[0][0]}`, which is not there to "
                            "read: its rules are unknown", args[0][1], "give its directory with --include-path DIR")
                return None
            return self.subshell(lambda: self.run_file(path, [f for f, _ in args[1:]]))
        return True

    def run_string(self, text: str, offset: int, params: list[str] | None = None) -> Status:
        """`eval STRING`, `bash -c STRING`: the string is bash of its own, positioned at the word it came from."""
        outer = self.code
        code = Code(text, lambda o: outer.origin(offset), outer.directory)
        if params is not None:
            saved = self.params
            self.params = params
            try:
                return self.subshell(lambda: self.run_code(code))
            finally:
                self.params = saved
        return self.run_code(code)

    def run_file(self, path: Path, params: list[str] | None = None) -> Status:
        try:
            text = path.read_bytes()[:MAX_VALUE].decode("utf-8", "replace")
        except OSError as e:
            self.report("warning", "unresolved-file", f"cannot read `{path}`: {e.strerror}", 0)
            return None
        src = Source(text, str(path))
        saved = self.params
        if params:
            self.params = params
        try:
            return self.run_code(Code(text, src.origin, str(path.parent)))
        except Return as r:
            return r.status
        finally:
            self.params = saved

    def cannot_expand(self, e: Unresolved, skipped: str) -> None:
        raw = e.unknown.raw
        if e.var is not None:
            message = (f"cannot expand `${e.var}`: it holds the output of `{raw}` (line {e.unknown.line}), "
                       f"which stockade does not run; skipped {skipped}")
            hint = f"write the value into the script instead, e.g. `{e.var}=\"192.0.2.1 192.0.2.2\"`"
        else:
            message = f"cannot expand `{raw}`: stockade does not run commands; skipped {skipped}"
            hint = "write the value it produces instead"
        self.report("warning", "cannot-expand", message, e.offset, hint)

    # -- builtins (b_NAME) ---------------------------------------------------------------------

    def b_colon(self, fields, node) -> Status:
        return True

    b_true = b_colon

    def b_false(self, fields, node) -> Status:
        return False

    def b_echo(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        newline, escapes = True, False
        while args and re.fullmatch(r"-[neE]+", args[0]):
            newline = newline and "n" not in args[0]
            escapes = "e" in args[0] or (escapes and "E" not in args[0])
            args = args[1:]
        text = " ".join(args)
        self.write((_ansi_c(text) if escapes else text) + ("\n" if newline else ""))
        return True

    def b_printf(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        if args and args[0] == "-v" and len(args) > 2:
            out = Output()
            self.outs.append(out)
            try:
                self.b_printf([("printf", 0), *[(a, 0) for a in args[2:]]], node)
            finally:
                self.outs.pop()
            self.set_var(args[1], "".join(out.parts), node)
            return True
        if not args:
            return False
        fmt, rest = args[0], args[1:]
        out = []
        for _ in range(MAX_LOOP):
            k = 0

            def conv(m: re.Match) -> str:
                nonlocal k
                spec = m.group(0)
                if spec == "%%":
                    return "%"
                arg = rest[k] if k < len(rest) else ""
                k += 1
                kind = spec[-1]
                if kind == "b":
                    return _ansi_c(arg)
                if kind in "di":
                    try:
                        return ("%" + spec[1:-1] + "d") % int(arg or 0)
                    except ValueError:
                        return arg
                if kind in "xXo":
                    try:
                        return ("%" + spec[1:]) % int(arg or 0)
                    except ValueError:
                        return arg
                return ("%" + spec[1:-1] + "s") % arg

            out.append(re.sub(r"%%|%[-+ 0#]*\d*(?:\.\d+)?[sdibqxXo]", conv, _ansi_c(fmt)))
            rest = rest[k:]
            if not rest or k == 0:
                break
        self.write("".join(out))
        return True

    def b_cat(self, fields, node) -> Status:
        files = [f for f in fields[1:] if not f[0].startswith("-") or f[0] == "-"]
        if not files:
            stream = self.stdin
            if stream is None:
                self.write_unknown(Unknown("cat", self.code.start(node), self.code))
                return None
            text = stream.text if isinstance(stream.text, Unknown) else stream.text[stream.pos:]
            if isinstance(text, Unknown):
                self.write_unknown(text)
                return None
            self.write(text)
            return True
        for name, off in files:
            if not self.outs:
                continue  # nothing reads the output: no need to look for the file
            text = self.read_file(name, off)
            if isinstance(text, Unknown):
                self.write_unknown(Unknown(f"cat {name}", off, self.code, "file"))
                return None
            self.write(text)
        return True

    def b_read(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        names, array, delim = [], None, "\n"
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-p", "-t", "-n", "-N", "-u", "-i") and i + 1 < len(args):
                i += 2
                continue
            if a == "-a" and i + 1 < len(args):
                array, i = args[i + 1], i + 2
                continue
            if a == "-d" and i + 1 < len(args):
                delim, i = args[i + 1][:1] or "\0", i + 2
                continue
            if a.startswith("-"):
                i += 1
                continue
            names.append(a)
            i += 1
        raw = "-r" in args or any(re.fullmatch(r"-\w*r\w*", a) for a in args)
        if self.stdin is None:
            line: str | None | Unknown = Unknown("read", self.code.start(node), self.code, "read")
        else:
            line = self.stdin.readline() if delim == "\n" else self._read_until(delim)
        if isinstance(line, Unknown):
            for n in names or ["REPLY"]:
                self.set_var(n, line, node)
            return None
        if line is None:
            for n in names or ["REPLY"]:
                self.set_var(n, "", node)
            return False
        ok = line.endswith(delim)
        line = line[:-1] if ok else line
        if not raw:
            line = re.sub(r"\\(.)", r"\1", line.replace("\\\n", ""))
        words = _ifs_split(line, self.ifs(), len(names or ["REPLY"]) if array is None else 0)
        if array is not None:
            self.set_var(array, words, node)
            return ok or bool(line)
        if not names:
            self.set_var("REPLY", line, node)
            return ok or bool(line)
        for k, n in enumerate(names):
            self.set_var(n, words[k] if k < len(words) else "", node)
        return ok or bool(line)

    def _read_until(self, delim: str) -> str | None | Unknown:
        s = self.stdin
        if isinstance(s.text, Unknown):
            return s.text
        if s.pos >= len(s.text):
            return None
        end = s.text.find(delim, s.pos)
        end = len(s.text) if end < 0 else end + 1
        line, s.pos = s.text[s.pos:end], end
        return line

    def b_test(self, fields, node) -> Status:
        return self.test([(f, None) for f, _ in fields[1:]], node)

    def b_bracket(self, fields, node) -> Status:
        if fields[-1][0] != "]":
            raise TestError("missing `]`")
        return self.test([(f, None) for f, _ in fields[1:-1]], node)

    def b_source(self, fields, node) -> Status:
        if len(fields) < 2:
            return False
        name, off = fields[1]
        path = self.find_file(name)
        if path is None:
            self.report("warning", "unresolved-source",
                        f"`{fields[0][0]} {name}` reads a file that is not there to read ({self.where_looked(name)}): "
                        "the variables, functions and rules it defines are unknown", off,
                        "give its directory with --include-path DIR")
            return None
        return self.run_file(path, [f for f, _ in fields[2:]] or None)

    b_dot = b_source

    def b_eval(self, fields, node) -> Status:
        text = " ".join(f for f, _ in fields[1:])
        return self.run_string(text, fields[1][1] if len(fields) > 1 else self.code.start(node))

    def b_let(self, fields, node) -> Status:
        v = 0
        for f, _ in fields[1:]:
            v = Arith(f, self.arith_get, self.arith_put).value()
        return v != 0

    def b_shift(self, fields, node) -> Status:
        n = int(fields[1][0]) if len(fields) > 1 and fields[1][0].isdigit() else 1
        if n > len(self.params):
            return False
        self.params = self.params[n:]
        return True

    def b_set(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        k = 0
        while k < len(args):
            a = args[k]
            if a == "--" or not a.startswith(("-", "+")) or a in ("-", "+"):
                self.params = args[k + 1:] if a in ("--", "-") else args[k:]
                break
            if a in ("-o", "+o"):
                if k + 1 < len(args) and args[k + 1] == "errexit":
                    self.errexit = a == "-o"
                k += 2
                continue
            if "e" in a:
                self.errexit = a[0] == "-"
            k += 1
        return True

    def b_exit(self, fields, node) -> Status:
        status = fields[1][0] in ("0", "") if len(fields) > 1 else self.last
        if self.obey_exit:
            raise Exit(status)
        self.exit_ignored(node)
        return status

    def exit_ignored(self, node: Node) -> None:
        pass

    def b_return(self, fields, node) -> Status:
        raise Return(fields[1][0] == "0" if len(fields) > 1 else self.last)

    def b_break(self, fields, node) -> Status:
        raise Loop(int(fields[1][0]) if len(fields) > 1 and fields[1][0].isdigit() else 1, True)

    def b_continue(self, fields, node) -> Status:
        raise Loop(int(fields[1][0]) if len(fields) > 1 and fields[1][0].isdigit() else 1, False)

    def b_which(self, fields, node) -> Status:
        return self.which([f for f in fields[1:] if not f[0].startswith("-")])

    def b_type(self, fields, node) -> Status:
        return self.which([f for f in fields[1:] if not f[0].startswith("-")])

    def b_local(self, fields, node) -> Status:
        for f, _ in fields[1:]:
            name, eq, value = f.partition("=")
            if NAME.fullmatch(name):
                self.scopes[-1 if len(self.scopes) > 1 else 0][name] = Var(value, set())
        return True

    b_declare = b_typeset = b_local

    def b_export(self, fields, node) -> Status:
        for f, _ in fields[1:]:
            name, eq, value = f.partition("=")
            if NAME.fullmatch(name) and eq:
                self.set_var(name, value, node)
        return True

    b_readonly = b_export

    def b_unset(self, fields, node) -> Status:
        return self.unset([f for f, _ in fields[1:]])

    def b_seq(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:] if not re.fullmatch(r"-[a-z]+", f)]
        try:
            nums = [int(a) for a in args]
        except ValueError:
            self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
            return None
        first, step, last = (1, 1, nums[0]) if len(nums) == 1 else (nums[0], 1, nums[1]) if len(nums) == 2 \
            else tuple(nums[:3]) if len(nums) >= 3 else (1, 1, 0)
        if step == 0 or (last - first) // step > MAX_LOOP:
            raise Abort(f"`seq` would print more than {MAX_LOOP} numbers; stockade stops here", self.code.start(node))
        self.write("".join(f"{n}\n" for n in range(first, last + (1 if step > 0 else -1), step)))
        return True

    # programs that only compute from their input (the realworld harness runs them for real too)

    def input_text(self, files: list[tuple[str, int]], node: Node) -> str | Unknown:
        if not files:
            if self.stdin is None:
                return Unknown(self.snippet(node), self.code.start(node), self.code)
            s = self.stdin
            return s.text if isinstance(s.text, Unknown) else s.text[s.pos:]
        parts = []
        for name, off in files:
            text = self.read_file(name, off)
            if isinstance(text, Unknown):
                return Unknown(f"{self.snippet(node)}", off, self.code, "file")
            parts.append(text)
        return "".join(parts)

    def filter_lines(self, fields, node, takes: set[str], fn) -> Status:
        """Run `fn(options, lines)` on the input lines of a text tool; unknown input makes unknown output."""
        opts: dict[str, str] = {}
        files, args = [], fields[1:]
        i = 0
        while i < len(args):
            a, off = args[i]
            if a.startswith("-") and len(a) > 1 and not files and not a[1:].isdigit():
                for k, ch in enumerate(a[1:]):
                    if ch in takes:
                        rest = a[k + 2:]
                        if rest:
                            opts[ch] = rest
                        elif i + 1 < len(args):
                            i += 1
                            opts[ch] = args[i][0]
                        break
                    opts[ch] = ""
            elif a.startswith("-") and a[1:].isdigit():
                opts["n"] = a[1:]
            else:
                files.append((a, off))
            i += 1
        return fn(opts, files)

    def emit_lines(self, text: str | Unknown, node: Node, fn) -> Status:
        if isinstance(text, Unknown):
            self.write_unknown(text)
            return None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        out = fn(lines)
        if isinstance(out, bool):
            return out
        self.write("".join(f"{ln}\n" for ln in out))
        return True

    def b_grep(self, fields, node) -> Status:
        def run(opts, files):
            pats = [opts["e"]] if "e" in opts else []
            if not pats:
                if not files:
                    return False
                pats, files = [files[0][0]], files[1:]
            text = self.input_text(files, node)
            flags = re.I if "i" in opts else 0
            name = fields[0][0]
            try:
                if "F" in opts or name == "fgrep":
                    regexes = [re.compile(re.escape(p), flags) for p in pats]
                else:
                    regexes = [re.compile(_posix_regex(p, "E" in opts or name == "egrep"), flags) for p in pats]
            except re.error:
                self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
                return None

            def pick(lines):
                hit = [ln for ln in lines if any((r.fullmatch(ln) if "x" in opts else r.search(ln)) for r in regexes)
                       != ("v" in opts)]
                if "q" in opts:
                    return bool(hit)
                if "c" in opts:
                    return [str(len(hit))]
                return hit
            status = self.emit_lines(text, node, pick)
            return status
        return self.filter_lines(fields, node, {"e", "f", "m", "A", "B", "C"}, run)

    b_egrep = b_fgrep = b_grep

    def b_cut(self, fields, node) -> Status:
        def run(opts, files):
            delim = opts.get("d", "\t")[:1] or "\t"
            spec = opts.get("f", opts.get("c"))
            if spec is None:
                return False
            idx = _ranges(spec)

            def cut(lines):
                out = []
                for ln in lines:
                    if "c" in opts and "f" not in opts:
                        out.append("".join(ln[i - 1] for i in sorted(idx(len(ln))) if i <= len(ln)))
                    elif delim not in ln:
                        if "s" not in opts:
                            out.append(ln)
                    else:
                        parts = ln.split(delim)
                        out.append(delim.join(parts[i - 1] for i in sorted(idx(len(parts))) if i <= len(parts)))
                return out
            return self.emit_lines(self.input_text(files, node), node, cut)
        return self.filter_lines(fields, node, {"d", "f", "c"}, run)

    def b_awk(self, fields, node) -> Status:
        """Only `awk [-F SEP] '{print $N, ...}'` (and with a /regex/ in front)."""
        def run(opts, files):
            if not files:
                return False
            prog, files = files[0][0], files[1:]
            m = re.fullmatch(r"\s*(?:/((?:[^/\\]|\\.)*)/)?\s*\{\s*print\s+((?:\$\d+|NF|\$NF)(?:\s*,\s*(?:\$\d+|\$NF))*)"
                             r"\s*;?\s*\}\s*", prog)
            if not m:
                self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
                return None
            regex = re.compile(_posix_regex(m.group(1), True)) if m.group(1) else None
            cols = [c.strip() for c in m.group(2).split(",")]
            sep = opts.get("F")

            def pr(lines):
                out = []
                for ln in lines:
                    if regex is not None and not regex.search(ln):
                        continue
                    parts = ln.split() if sep in (None, " ") else ln.split(sep if len(sep) == 1 else sep)
                    vals = []
                    for c in cols:
                        if c in ("$NF",):
                            vals.append(parts[-1] if parts else "")
                        elif c == "NF":
                            vals.append(str(len(parts)))
                        else:
                            k = int(c[1:])
                            vals.append(ln if k == 0 else parts[k - 1] if k <= len(parts) else "")
                    out.append(" ".join(vals))
                return out
            return self.emit_lines(self.input_text(files, node), node, pr)
        return self.filter_lines(fields, node, {"F", "v", "f"}, run)

    def b_tr(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        opts = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
        sets = [_tr_set(a) for a in args if not (a.startswith("-") and len(a) > 1)]
        text = self.input_text([], node)
        if isinstance(text, Unknown) or not sets:
            self.write_unknown(text if isinstance(text, Unknown) else Unknown(self.snippet(node), 0, self.code))
            return None
        if "d" in opts:
            text = "".join(c for c in text if c not in sets[0])
        elif len(sets) > 1:
            to = sets[1] + sets[1][-1:] * max(len(sets[0]) - len(sets[1]), 0)
            text = text.translate({ord(a): b for a, b in zip(sets[0], to)})
        if "s" in opts:
            squeeze = sets[-1]
            text = re.sub("([" + re.escape(squeeze) + "])\\1+", r"\1", text) if squeeze else text
        self.write(text)
        return True

    def b_head(self, fields, node) -> Status:
        return self.filter_lines(fields, node, {"n", "c"}, lambda o, f: self.emit_lines(
            self.input_text(f, node), node, lambda ls: ls[:int(o.get("n", "10").lstrip("-") or 10)]))

    def b_tail(self, fields, node) -> Status:
        def run(o, f):
            n = o.get("n", "10")
            if n.startswith("+"):
                return self.emit_lines(self.input_text(f, node), node, lambda ls: ls[int(n[1:]) - 1:])
            k = int(n.lstrip("-") or 10)
            return self.emit_lines(self.input_text(f, node), node, lambda ls: ls[-k:] if k else [])
        return self.filter_lines(fields, node, {"n", "c"}, run)

    def b_sort(self, fields, node) -> Status:
        def run(o, f):
            def srt(ls):
                key = (lambda x: int(re.match(r"\s*-?\d*", x).group().strip() or 0)) if "n" in o else None
                out = sorted(ls, key=key, reverse="r" in o)
                return list(dict.fromkeys(out)) if "u" in o else out
            return self.emit_lines(self.input_text(f, node), node, srt)
        return self.filter_lines(fields, node, {"k", "t", "o", "T", "S"}, run)

    def b_uniq(self, fields, node) -> Status:
        def uniq(ls):
            return [x for i, x in enumerate(ls) if i == 0 or ls[i - 1] != x]
        return self.filter_lines(fields, node, set(), lambda o, f: self.emit_lines(self.input_text(f, node), node,
                                                                                  uniq))

    def b_wc(self, fields, node) -> Status:
        def run(o, f):
            text = self.input_text(f, node)
            if isinstance(text, Unknown):
                self.write_unknown(text)
                return None
            n = text.count("\n") if "l" in o else len(text.split()) if "w" in o else len(text) if "c" in o \
                else None
            self.write((str(n) if n is not None else f"{text.count(chr(10))} {len(text.split())} {len(text)}")
                       + "\n")
            return True
        return self.filter_lines(fields, node, set(), run)

    def b_basename(self, fields, node) -> Status:
        args = [f for f, _ in fields[1:]]
        if args:
            base = args[0].rstrip("/").rsplit("/", 1)[-1]
            if len(args) > 1 and base.endswith(args[1]) and base != args[1]:
                base = base[:-len(args[1])]
            self.write(base + "\n")
        return True

    def b_dirname(self, fields, node) -> Status:
        if len(fields) > 1:
            d = fields[1][0].rstrip("/").rsplit("/", 1)
            self.write((d[0] or "/" if len(d) > 1 else ".") + "\n")
        return True

    def b_env(self, fields, node) -> Status:
        if len(fields) > 1:
            return self.prefixed(fields, node)
        for scope in self.scopes:
            for k, v in scope.items():
                if "export" in v.attrs and isinstance(v.value, str):
                    self.write(f"{k}={v.value}\n")
        return True

    def b_cd(self, fields, node) -> Status:
        return True

    def b_getopts(self, fields, node) -> Status:
        return False

    def b_shopt(self, fields, node) -> Status:
        return True

    b_trap = b_umask = b_ulimit = b_hash = b_alias = b_wait = b_sleep = b_logger = b_shopt


def _posix_regex(p: str, extended: bool) -> str:
    """A grep pattern (basic or extended) as a Python regex, for what firewall scripts use."""
    if not extended:
        p = re.sub(r"\\([(){}|+?])", r"\0\1", p)  # \( in BRE is a group
        p = re.sub(r"(?<!\0)([(){}|+?])", r"\\\1", p).replace("\0", "")
    classes = {"[:digit:]": r"\d", "[:space:]": r"\s", "[:alpha:]": "a-zA-Z", "[:alnum:]": "a-zA-Z0-9",
               "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:blank:]": " \t", "[:punct:]": r"!-/:-@\[-`{-~"}
    for k, v in classes.items():
        p = p.replace(k, v)
    return p


def _ranges(spec: str):
    def idx(n: int) -> set[int]:
        out: set[int] = set()
        for part in spec.split(","):
            a, dash, b = part.partition("-")
            lo = int(a) if a.isdigit() else 1
            hi = (int(b) if b.isdigit() else n) if dash else lo
            out.update(range(lo, min(hi, max(n, lo)) + 1))
        return out
    return idx


def _tr_set(s: str) -> str:
    s = _ansi_c(s)
    for k, v in {"[:upper:]": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[:lower:]": "abcdefghijklmnopqrstuvwxyz",
                 "[:digit:]": "0123456789", "[:space:]": " \t\n\r\f\v", "[:blank:]": " \t"}.items():
        s = s.replace(k, v)
    return re.sub(r"(.)-(.)", lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1))
                  if ord(m.group(1)) <= ord(m.group(2)) else m.group(0), s)


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


def _ifs_split(line: str, ifs: str, n: int) -> list[str]:
    """`read`'s split of a line into at most n fields (0: all), the last taking the rest, as bash does."""
    ws = "".join(c for c in " \t\n" if c in ifs)
    other = "".join(c for c in ifs if c not in ws)
    line = line.strip(ws) if ws else line
    out: list[str] = []
    i = 0
    while i <= len(line) and line:
        if n and len(out) == n - 1:
            rest = line[i:]
            if ws:
                rest = rest.rstrip(ws)
            if other and rest and rest[-1] in other and not any(c in other for c in rest[:-1]):
                rest = rest[:-1]
            out.append(rest)
            return out
        j = i
        while j < len(line) and line[j] not in ifs:
            j += 1
        out.append(line[i:j])
        if j >= len(line):
            break
        k = j
        while k < len(line) and line[k] in ws:
            k += 1
        if k < len(line) and line[k] in other and line[j] not in other:
            k += 1
            while k < len(line) and line[k] in ws:
                k += 1
        elif line[j] in other:
            k = j + 1
            while k < len(line) and line[k] in ws:
                k += 1
        i = k
        if i >= len(line) and line[j] in other and (not n or len(out) < n):
            break
    return out


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for c in text:
        depth += (c == "(") - (c == ")")
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


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

    return re.sub(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", rep, text, flags=re.S)
