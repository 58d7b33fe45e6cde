"""-m string: a byte pattern anywhere in a window of the packet (kernel textsearch)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from .base import Extension, Option, register
from .values import parse_c_uint

MAX_PATTERN = 128  # XT_STRING_MAX_PATTERN_SIZE
ALGOS = ("bm", "kmp")  # the kernel's fsm wants binary token tables, not a pattern
HEX = "0123456789abcdefABCDEF"


@dataclass(frozen=True)
class StringMatch:
    """True when `pattern` lies wholly within packet bytes [from_offset, to_offset),
    counted from the start of the IP header; `!` negates; icase ignores case as the kernel's
    toupper does (ASCII and Latin-1 letters).
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


def kernel_upper(c: int) -> int:
    """The kernel's toupper (lib/ctype.c): ASCII and Latin-1 lower-case letters, 223 (ß) and 255 (ÿ)
    included, move down by 32."""
    return c - 32 if 97 <= c <= 122 or 223 <= c <= 246 or 248 <= c <= 255 else c


def _be(value: int, size: int) -> list[int]:
    return list(value.to_bytes(size, "big"))


def packet_bytes(pkt) -> list[int | None] | None:
    """The packet from its IP header on, one entry per byte, None where the model does not carry the
    byte (IP id and checksums, flow label, TCP sequence numbers, window, options...). None when the
    payload is unknown or does not fit the headers."""
    if pkt.payload is None:
        return None
    v4, frag = pkt.family is Family.IPV4, pkt.fragment
    total, u = pkt.length, None
    if v4:
        head = [0x45, pkt.tos, *_be(total, 2), u, u, u, pkt.frag_offset & 0xFF, pkt.ttl, pkt.proto, u, u,
                *_be(pkt.src, 4), *_be(pkt.dst, 4)]
    else:
        head = [0x60 | pkt.tos >> 4, u, u, u, *_be(total - 40, 2), 44 if frag else pkt.proto, pkt.ttl,
                *_be(pkt.src, 16), *_be(pkt.dst, 16)]
        if frag:  # the fragment header; its reserved bits are not modelled
            head += [pkt.proto, u, pkt.frag_offset >> 5, u, u, u, u, u]
    room = total - len(pkt.payload) - len(head)
    if not pkt.frag_offset:
        if pkt.proto == 6:
            if room < 20 or room > 60 or room % 4 or (room > 20) != bool(pkt.tcp_options):
                return None
            head += [*_be(pkt.sport, 2), *_be(pkt.dport, 2)] + [u] * 9 + [pkt.tcp_flags] + [u] * (room - 14)
            room = 0
        elif pkt.proto in (17, 136):  # the UDP length (UDP-Lite: coverage) is unknown in a fragment
            size = None if frag or pkt.proto == 136 else room + len(pkt.payload)
            head += [*_be(pkt.sport, 2), *_be(pkt.dport, 2), *([u, u] if size is None else _be(size, 2)), u, u]
            room -= 8
        elif pkt.proto in (1, 58):
            head += [pkt.icmp_type, pkt.icmp_code or 0] + [u] * 6
            room -= 8
        elif pkt.proto == 132:
            head += [*_be(pkt.sport, 2), *_be(pkt.dport, 2)] + [u] * 8
            room -= 12
        elif pkt.proto == 33:
            return None  # DCCP's header length is not modelled
    if room != 0:
        return None
    return head + list(pkt.payload)


def search(d: StringMatch, data: list[int | None], pkt) -> bool | None:
    """skb_find_text over [from, to): True if the pattern surely lies wholly inside and is found,
    False if it cannot lie there, None if bytes or buffer layout the model lacks decide. kmp finds an
    occurrence wherever it lies. bm searches each piece of the buffer on its own and misses one that
    crosses pieces: sure are only occurrences inside one piece (pkt.buffer_splits; unknown, only the
    IP header is sure to be one piece). With --icase, bm's skip table does not know that 223 and 255
    are lower case and may jump over an occurrence after one of them (or after an unknown byte)."""
    fold = kernel_upper if d.icase else (lambda c: c)
    pat = [fold(c) for c in d.pattern]
    n, end = len(pat), min(d.to_offset, len(data))
    whole = 20 if pkt.family is Family.IPV4 else 40
    maybe = False
    for s in range(d.from_offset, end - n + 1):
        window = data[s:s + n]
        if any(b is not None and fold(b) != p for b, p in zip(window, pat)):
            continue
        if None in window:
            maybe = True
            continue
        if d.algo == "kmp":
            return True
        splits = pkt.buffer_splits
        if splits is not None and any(s < cut < s + n for cut in splits):
            continue  # across pieces: bm never sees it
        begin = d.from_offset if splits is None else max([d.from_offset] + [c for c in splits if c <= s])
        if (splits is not None or s + n <= whole) and not (
                d.icase and any(b is None or b in (223, 255) for b in data[begin:s + n])):
            return True
        maybe = True
    return None if maybe else False


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
    nft_refusal = "string: nftables cannot search packet payload for a pattern"
    undecidable = "the payload is no dimension"
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

    def holds(self, d: StringMatch, pkt, env) -> bool | None:
        """string_mt: skb_find_text over the packet from its IP header, as it is at the rule."""
        got = packet_bytes(env.pkt)
        if got is None:
            return None
        found = search(d, got, env.pkt)
        return None if found is None else found != d.invert

    def save(self, d: StringMatch) -> list[str]:
        out = save_pattern(d.pattern, d.invert) + ["--algo", d.algo]
        out += ["--from", str(d.from_offset)] if d.from_offset else []
        out += ["--to", str(d.to_offset)] if d.to_offset != 65535 else []
        return out + (["--icase"] if d.icase else [])
