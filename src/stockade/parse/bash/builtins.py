"""The builtins and the text programs (grep, cut, awk's print, tr, ...) the bash reader runs itself.

A builtin is a method `b_NAME`. Programs that only compute from their input are run too, so
`for ip in $(grep -v '^#' list | cut -d: -f1)` reads the list; anything beyond what they support
makes their output unknown, never guessed.
"""
from __future__ import annotations

import re

from tree_sitter import Node

from .arith import Arith
from .test import TestError
from .values import (
    MAX_LOOP,
    MAX_STEPS,
    MAX_VALUE,
    NAME,
    Abort,
    Exit,
    Loop,
    Output,
    Return,
    Status,
    Unknown,
    Var,
)
from .words import _ansi_c


class Builtins:
    """The builtin half of `Shell` (run.py)."""

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
        out, at, size = [], 0, 0
        while True:  # the format is used again until the arguments run out, as bash does
            k = 0

            def conv(m: re.Match) -> str:
                nonlocal k
                spec = m.group(0)
                if spec == "%%":
                    return "%"
                if any(int(n) > MAX_VALUE for n in re.findall(r"\d+", spec)):  # a width would be the memory
                    raise Abort(f"`printf` would print more than {MAX_VALUE} characters; stockade stops here",
                                self.code.start(node), code="shell-limit")
                arg = rest[at + k] if at + k < len(rest) else ""  # noqa: B023 (called in this iteration)
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
            size += len(out[-1])
            if size > MAX_VALUE:
                raise Abort(f"`printf` would print more than {MAX_VALUE} characters; stockade stops here",
                            self.code.start(node), code="shell-limit")
            at += k
            if at >= len(rest) or k == 0:
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
            # a variable the script does not set may come from it: unknown from here on
            self.unknown_env = self.unknown_env or Unknown(f"{fields[0][0]} {name}", off, self.code, "source")
            self.unknown_program(node, what=f"`{fields[0][0]} {name}` reads a file that is not there to read")
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
            name, _, value = f.partition("=")
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
        if step == 0 or (last - first) // step >= MAX_STEPS:  # as many as a loop over them could run commands
            raise Abort(f"`seq` would print more than {MAX_STEPS} numbers; stockade stops here", self.code.start(node))
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
            flags = re.IGNORECASE if "i" in opts else 0
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
                    parts = ln.split() if sep in (None, " ") else ln.split(sep)
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

    def b_xargs(self, fields, node) -> Status:
        """`xargs [-r] [-n N | -L N] CMD ARGS`: CMD run with the words of stdin (firewall scripts pipe rule
        lists into it)."""
        args, per, by_line, i = fields[1:], 0, False, 0
        while i < len(args) and args[i][0].startswith("-"):
            a = args[i][0]
            m = re.fullmatch(r"-[rt0]*(?:([nL])(\d*))?", a)
            if m is None:
                self.write_unknown(Unknown(self.snippet(node), self.code.start(node), self.code))
                return None
            if m.group(1):
                by_line = m.group(1) == "L"
                if not m.group(2) and i + 1 < len(args) and args[i + 1][0].isdigit():
                    i += 1
                    per = int(args[i][0])
                else:
                    per = int(m.group(2) or 0)
            i += 1
        cmd = args[i:] or [("echo", fields[0][1])]
        text = self.input_text([], node)
        if isinstance(text, Unknown):
            self.report("warning", "cannot-expand", f"`{self.snippet(node)}` runs a command on input stockade cannot "
                        "read; skipped it", self.code.start(node), "write the commands into the script instead")
            return None
        lines = [ln.split() for ln in text.splitlines() if ln.strip()]
        if by_line and per > 1:
            lines = [[w for ln in lines[k:k + per] for w in ln] for k in range(0, len(lines), per)]
        elif not by_line:
            words = [w for ln in lines for w in ln]
            lines = [words[k:k + per] for k in range(0, len(words), per)] if per else ([words] if words else [])
        status: Status = True
        for k, ln in enumerate(lines):
            if k == MAX_LOOP:
                raise Abort(f"`xargs` would run more than {MAX_LOOP} commands; stockade stops here",
                            self.code.start(node), code="shell-loop")
            status = self.command([*cmd, *((w, cmd[0][1]) for w in ln)], node, None)
        return status

    def b_id(self, fields, node) -> Status:
        """A firewall script runs as root (it could not change the firewall otherwise)."""
        self.write("0\n" if any(f in ("-u", "-g", "-ur", "-gr") for f, _ in fields[1:]) else
                   "uid=0(root) gid=0(root) groups=0(root)\n")
        return True

    def b_whoami(self, fields, node) -> Status:
        self.write("root\n")
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
