"""Running a bash syntax tree statically, as bash would run it, without running any program.

`Shell` keeps what bash keeps (variables and arrays with dynamic scope, functions,
positional parameters, `set -e`, stdin of loops) and runs the builtins firewall
scripts use; every other command goes to `external`, which the script reader
overrides (iptables, iptables-restore, ...). Output of `echo`/`printf`/`cat` is
captured for `$(...)` and pipes, so `for ip in $(cat list)` and
`cat list | while read ip` read the list.

Never a guess: a value stockade cannot know (output of a program it does not
run, a file that is not there) is an `Unknown`; a word that needs one raises
`Unresolved`, and the caller reports what it skipped at the line (a simple
command keeps such words as written, `self.unresolved`, so an iptables command can
still say where its rule goes; a command that may do anything goes to
`unknown_program`). A condition
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
from pathlib import Path

from tree_sitter import Node

from ...files import read_regular
from .arith import Arith, ArithError
from .builtins import Builtins
from .test import Test, TestError, glob_regex
from .tree import Code, Source, child, keyword, kids, syntax_errors
from .values import (
    FIREWALL_TOOLS,
    MAX_DEPTH,
    MAX_FILE,
    MAX_LOOP,
    MAX_STEPS,
    NAME,
    PREFIXES,
    RUNS_CODE,
    TEXT_TOOLS,
    WORDISH,
    Abort,
    Exit,
    Loop,
    Output,
    Piece,
    Return,
    Status,
    Stream,
    Unknown,
    Unresolved,
    Var,
)
from .words import Words, _unescape_dq


class Shell(Words, Builtins):
    """The interpreter; subclasses override `external`, `report` and the hooks below."""

    obey_exit = True

    def __init__(self, args: list[str] | None = None, env: dict[str, str] | None = None,
                 include_paths: list[str] | None = None):
        # a firewall script runs as root (it could not change the firewall otherwise)
        self.scopes: list[dict[str, Var]] = [{"EUID": Var("0", {"readonly"}), "UID": Var("0", {"readonly"}),
                                              **{k: Var(v, {"export"}) for k, v in (env or {}).items()}}]
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
        self.assumed_at: list = []  # the same, as (Origin, whether the path parse prints takes it)
        self.capturing = 0  # inside `$(...)` or `<(...)`: an unknown program there is reported by its use
        self.unresolved: dict[int, Unresolved] = {}  # the words of the current command stockade cannot expand
        self.unknown_env: Unknown | None = None  # a sourced file that is not there: what it may have set

    # -- hooks -----------------------------------------------------------------------------------

    def report(self, severity: str, code: str, message: str, offset: int, hint: str | None = None) -> None:
        raise NotImplementedError

    def external(self, fields: list[tuple[str, int]], node: Node, problem: Unresolved | None) -> Status:
        """A command that is not a builtin or a function; it says what it writes (`write_unknown` if unknown)."""
        raise NotImplementedError

    def literal(self, text: str, offset: int) -> None:
        """Every unquoted literal word is shown here (the script reader warns about curly quotes)."""

    def unknown_program(self, node: Node, problem: Unresolved | None = None, what: str | None = None) -> None:
        """A command that may change the firewall in ways stockade cannot know: a program it cannot look
        into, a script that is not there, `eval` of text it cannot expand (the reader makes every answer
        of the rules it reads depend on this line)."""

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
        except (re.error, ValueError) as e:  # a pattern or number in the script stockade cannot read
            self.report("warning", "shell-unreadable", f"stockade cannot read this command ({e}); skipped it",
                        self.code.start(node), "simplify the pattern or number, or report it as a stockade bug")
            status = None
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
            return self.pipeline(list(kids(node)), None)
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
        if status is None and op == "&&":  # read as run, as an `if`; what it adds may not be there
            return self.assumed_run(left, lambda: self.exec(right))
        if status is None and op == "||":  # read as not run; the rules it would add may be there all the same
            try:  # (its variables and an `exit` stay inside: the path read goes on without it)
                self.subshell(lambda: self.assumed_run(left, lambda: self.exec(right), printed=False))
            except Loop:
                pass
            return status
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
                status = self.subshell(lambda c=cmd: self.exec(c))
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
            cmds = list(kids(rest)) if rest.type == "pipeline" else [rest]
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
            text = read_regular(path, MAX_FILE).decode("utf-8", "replace")
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
                clauses.append(([], list(kids(c))))
        for cond, body in clauses:
            if cond:
                status = self.condition(lambda c=cond: self.seq(c))
                if status is False:
                    continue
                if status is None:
                    self.assume(cond[0], "the condition", "true (the `then` branch runs)")
                    return self.assumed_run(cond[0], lambda b=body: self.seq(b))
            return self.seq(body)
        return True

    def assumed_run(self, node: Node, fn, printed: bool = True) -> Status:
        """Run what depends on a condition stockade cannot decide at `node` (`printed`: the reading
        `parse` prints takes this path; otherwise only the analyses see what it adds)."""
        self.assumed.append(self.code.line(self.code.start(node)))
        self.assumed_at.append((self.code.origin(self.code.start(node)), printed))
        try:
            return fn()
        finally:
            self.assumed.pop()
            self.assumed_at.pop()

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
                raise Loop(e.n - 1, e.brk) from None
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
        values = list(node.children_by_field_name("value"))
        if any(c.type == "in" for c in node.children):
            items = [f for v in values for f, _ in self.fields(v)]
        else:
            items = list(self.params)
        if keyword(node) == "select":
            self.report("warning", "unresolved-condition", "`select` waits for a user's choice; its body is read "
                        "once with the first item", self.code.start(node))
            items = items[:1]
        for value in items:  # ends with its list, whose words MAX_VALUE bounds; the commands count to MAX_STEPS
            self.set_var(var, value, node)
            if not self.loop_body(body):
                break
        return True

    def c_for(self, node: Node) -> Status:
        raw = self.code.raw(node)
        m = re.match(r"for\s*\(\((.*?)\)\)", raw, re.DOTALL)
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
                status = self.seq(stmts)
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
        return re.fullmatch(regex, subject, re.DOTALL) is not None

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
        def arith(s):
            return Arith(s, self.arith_get, self.arith_put).value()
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
        if name.startswith(("/proc/", "/sys/")):
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

    # -- simple commands -----------------------------------------------------------------------

    def simple(self, node: Node) -> Status:
        assigns = [c for c in node.children if c.type == "variable_assignment"]
        name = child(node, "name")
        words = ([name] if name is not None else []) + list(node.children_by_field_name("argument"))
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
        unresolved: dict[int, Unresolved] = {}
        for w in words:
            w = w[0] if isinstance(w, tuple) else w
            try:
                fields += self.fields(w)
            except Unresolved as e:  # kept as written: a command may still know where it goes (`-s $X`)
                problem = problem or e
                fields.append((self.code.raw(w), self.code.start(w)))
                unresolved[self.code.start(w)] = e
        self.unresolved = unresolved
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
        """Run one simple command. With `problem`, the words in `self.unresolved` (by offset) are ones
        stockade cannot expand, kept as written."""
        if not fields:
            if problem is not None:
                self.cannot_expand(problem, f"`{self.snippet(node)}`")
            return True if problem is None else None
        name = fields[0][0]
        if problem is not None and fields[0][1] in self.unresolved:  # which program runs is unknown
            self.cannot_expand(problem, f"`{self.snippet(node)}`")
            self.unknown_program(node, problem)
            return None
        if name in self.functions:
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
        if name in PREFIXES and (problem is None or (len(fields) > 1 and fields[1][1] not in self.unresolved)):
            return self.prefixed(fields, node, problem)
        if problem is not None and (name in PREFIXES or name in RUNS_CODE):  # what it would run is unknown
            self.cannot_expand(problem, f"`{self.snippet(node)}`")
            self.unknown_program(node, problem)
            return None
        if problem is None and name in ("bash", "sh", "dash") and len(fields) > 1:
            return self.sub_shell(fields, node)
        return self.external(fields, node, problem)

    def call(self, name: str, fields: list[tuple[str, int]], node: Node) -> Status:
        body, code = self.functions[name]
        self.calls += 1
        if self.calls > MAX_DEPTH:
            self.calls -= 1
            raise Abort(f"functions call each other more than {MAX_DEPTH} deep; stockade stops this call",
                        self.code.start(node), code="shell-nesting")
        saved = (self.params, self.code)
        # an argument stockade cannot expand stays unknown inside the function (`$1` raises Unresolved)
        self.params = [self.unresolved[o].unknown if o in self.unresolved else f for f, o in fields[1:]]
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

    def prefixed(self, fields: list[tuple[str, int]], node: Node, problem: Unresolved | None = None) -> Status:
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
        if rest[0][1] in self.unresolved:  # the option words left the command itself unknown
            self.cannot_expand(problem, f"`{self.snippet(node)}`")
            self.unknown_program(node, problem)
            return None
        if name in ("command", "builtin") and rest[0][0] in self.functions:
            saved = self.functions.pop(rest[0][0])
            try:
                status = self.command(rest, node, problem)
            finally:
                self.functions[rest[0][0]] = saved
        else:
            status = self.command(rest, node, problem)
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
                self.unknown_program(node, what=f"runs the script `{args[0][0]}`, which is not there to read")
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
            text = read_regular(path, MAX_FILE).decode("utf-8", "replace")
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

    def cannot_expand(self, e: Unresolved, skipped: str, done: str = "skipped") -> None:
        raw = e.unknown.raw
        if e.var is not None and e.unknown.why == "source":
            message = (f"cannot expand `${e.var}`: the script does not set it, and `{raw}` (line {e.unknown.line}), "
                       f"a file that is not there, may; {done} {skipped}")
            hint = "give the file's directory with --include-path DIR, or the value with --env"
        elif e.var is not None:
            message = (f"cannot expand `${e.var}`: it holds the output of `{raw}` (line {e.unknown.line}), "
                       f"which stockade does not run; {done} {skipped}")
            hint = f"write the value into the script instead, e.g. `{e.var}=\"192.0.2.1 192.0.2.2\"`"
        else:
            message = f"cannot expand `{raw}`: stockade does not run commands; {done} {skipped}"
            hint = "write the value it produces instead"
        self.report("warning", "cannot-expand", message, e.offset, hint)


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
