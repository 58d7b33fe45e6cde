"""-m string: a byte pattern anywhere in a window of the packet (kernel textsearch)."""
from __future__ import annotations

from dataclasses import dataclass

from ..parse.diagnostics import ParseError
from .base import Extension, Option, register
from .values import parse_c_uint

MAX_PATTERN = 128  # XT_STRING_MAX_PATTERN_SIZE
ALGOS = ("bm", "kmp")  # the kernel's fsm wants binary token tables, not a pattern
HEX = "0123456789abcdefABCDEF"


@dataclass(frozen=True)
class StringMatch:
    """True when `pattern` lies wholly within packet bytes [from_offset, to_offset),
    counted from the start of the IP header; `!` negates; icase ignores ASCII case.
    bm (Boyer-Moore) misses a match that spans two non-linear parts of the packet
    buffer; kmp finds it."""

    pattern: bytes
    algo: str
    from_offset: int = 0
    to_offset: int = 65535
    icase: bool = False
    invert: bool = False


def parse_hex_string(text: str) -> bytes:
    """--hex-string as iptables reads it: plain characters, `|hex pairs|` blocks (a space
    may follow `|` or a pair), and `\\c` for a literal c outside blocks. Quirks kept: a `|`
    at the very end is dropped, and the character right after a closing `|` is literal."""
    s = text.encode("utf-8", "surrogateescape")
    if not s:
        raise ParseError("string: --hex-string is empty", code="bad-string")
    out, i, in_hex = bytearray(), 0, False
    while i < len(s):
        if len(out) >= MAX_PATTERN:
            raise ParseError(f"string: pattern longer than {MAX_PATTERN} bytes", code="too-long")
        c, literal = s[i:i + 1], False
        if c == b"\\":
            if in_hex:
                raise ParseError("string: `\\` is not allowed inside a |hex| block", code="bad-string")
            literal = True
        elif c == b"|":
            in_hex = not in_hex
            while in_hex and s[i + 1:i + 2] == b" ":
                i += 1
            if i + 1 >= len(s):
                break
            i += 1
        if literal:
            if i + 1 >= len(s):
                raise ParseError("string: `\\` at the end of --hex-string escapes nothing", code="bad-string")
            out += s[i + 1:i + 2]
            i += 2
        elif in_hex:
            pair = s[i:i + 2].decode("latin-1")
            if len(pair) < 2 or i + 2 >= len(s):
                raise ParseError(f"string: unterminated |hex| block in `{text}`", code="bad-string",
                                 hint="hex blocks hold pairs of hex digits and end with `|`, e.g. |0d0a|")
            if not all(ch in HEX for ch in pair):
                raise ParseError(f"string: `{pair}` is not a hex byte in `{text}`", code="bad-string")
            out.append(int(pair, 16))
            i += 3 if s[i + 2:i + 3] == b" " else 2
        else:
            out += s[i:i + 1]
            i += 1
    return bytes(out)


def save_pattern(pattern: bytes, invert: bool) -> list[str]:
    """iptables prints --string "..." (escaping `"` and `\\`) unless a byte is not printable
    ASCII or the last byte is `\\`; then --hex-string "|..|" with every byte in hex."""
    neg = ["!"] if invert else []
    if all(32 <= b < 127 for b in pattern) and not pattern.endswith(b"\\"):
        text = pattern.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        return neg + ["--string", f'"{text}"']
    return neg + ["--hex-string", f'"|{pattern.hex()}|"']


@register
class StringMatchExt(Extension):
    name = "string"
    options = (Option("--string", invertible=True), Option("--hex-string", invertible=True),
               Option("--algo"), Option("--from"), Option("--to"), Option("--icase", nargs=0))

    def convert(self, opt, args, ctx):
        key = opt.key
        if key == "string":
            pattern = args[0].encode("utf-8", "surrogateescape")
            if len(pattern) > MAX_PATTERN:
                raise ParseError(f"string: pattern is {len(pattern)} bytes; at most {MAX_PATTERN}", code="too-long")
            return pattern
        if key == "hex-string":
            return parse_hex_string(args[0])
        if key == "algo":
            if args[0] not in ALGOS:
                raise ParseError(f"string: unknown --algo `{args[0]}`", code="bad-algo", hint="use bm or kmp")
            return args[0]
        if key in ("from", "to"):
            return parse_c_uint(args[0], f"string --{key}", 0, 65535)
        return True

    def finish(self, acc, ctx):
        if "string" in acc and "hex-string" in acc:
            raise ParseError("string: --string and --hex-string cannot be combined", code="conflicting-options")
        invert, pattern = acc.get("string") or acc.get("hex-string") or (False, None)
        if pattern is None:
            raise ParseError("string: --string or --hex-string is required", code="missing-option")
        if "algo" not in acc:
            raise ParseError("string: --algo is required", code="missing-option", hint="add --algo bm or --algo kmp")
        if not pattern:
            raise ParseError("string: the pattern is empty", code="bad-string")
        start, end = acc.get("from", (0, 0))[1], acc.get("to", (0, 65535))[1]
        if start > end:
            raise ParseError(f"string: --from {start} is after --to {end}", code="bad-range")
        return StringMatch(pattern, acc["algo"][1], start, end, "icase" in acc, invert)

    def save(self, d: StringMatch) -> list[str]:
        out = save_pattern(d.pattern, d.invert) + ["--algo", d.algo]
        out += ["--from", str(d.from_offset)] if d.from_offset else []
        out += ["--to", str(d.to_offset)] if d.to_offset != 65535 else []
        return out + (["--icase"] if d.icase else [])
