"""-m connmark and -j CONNMARK: the 32-bit mark kept on the packet's conntrack entry,
so every packet of a connection can carry it (CONNMARK --restore-mark copies it back)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, hexnum, masked, xmark
from .base import Extension, Option, register
from .mark import ALL, XMARK_OPTIONS, parse_mark_mask, save_mark_mask, xmark_of
from .values import parse_c_uint


@dataclass(frozen=True)
class ConnmarkMatch:
    """True when (connection mark & mask) == value; `!` negates. A packet without a
    conntrack entry never matches, even with `!`."""

    value: int
    mask: int = ALL
    invert: bool = False


@dataclass(frozen=True)
class ConnmarkTarget:
    """The CONNMARK target; `<<`/`>>` below is the shift (32-bit, default none). Packets
    without a conntrack entry are left alone; the next rule always runs.
      set:     ctmark := ((ctmark & ~ctmask) ^ ctmark_value) << or >> shift
      save:    ctmark := (ctmark & ~ctmask) ^ ((nfmark & nfmask) << or >> shift)
      restore: nfmark := (nfmark & ~nfmask) ^ ((ctmark & ctmask) << or >> shift)
    nfmask is unused (kept at all ones) for set, ctmark_value is 0 for save/restore."""

    mode: str  # "set", "save" or "restore"
    ctmark_value: int = 0
    ctmask: int = ALL
    nfmask: int = ALL
    shift: int = 0
    shift_right: bool = False


def has_entry(pkt, env) -> bool | None:
    """Whether nf_ct_get finds a conntrack entry on the packet at this rule. The raw table runs
    before conntrack: only a packet on lo may already carry the entry its output path attached,
    which the model does not follow (None). INVALID and UNTRACKED packets carry none."""
    if env.at[0] == "raw":
        return None if pkt.iif == "lo" and pkt.hook == "INPUT" else False
    return env.ctstate not in (None, "INVALID", "UNTRACKED")


def shifted(value: int, bits: int, right: bool) -> int:
    return (value >> bits) if right else (value << bits) & ALL


@register
class ConnmarkMatchExt(Extension):
    name = "connmark"
    undecidable = "a connection mark set by earlier packets"
    conntrack = True
    options = (Option("--mark", invertible=True, type=lambda word: parse_mark_mask(word, "connmark"),
                      required=True, hint="write -m connmark --mark VALUE[/MASK]"),)

    def finish(self, acc, ctx):
        invert, (value, mask) = acc["mark"]
        return ConnmarkMatch(value, mask, invert)

    def holds(self, d: ConnmarkMatch, pkt, env) -> bool | None:
        """connmark_mt: false without a conntrack entry, even with `!`; else tests ct->mark."""
        entry = has_entry(pkt, env)
        if entry is False:
            return False
        if entry is None or env.ctmark is None:
            return None
        return ((env.ctmark & d.mask) == d.value) != d.invert

    def save(self, d: ConnmarkMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--mark", save_mark_mask(d.value, d.mask)]

    def nft(self, d: ConnmarkMatch, ctx) -> list[Part]:
        return [Part(masked("ct mark", d.value, d.mask, d.invert, 32))]


MODES = {"save-mark": "save", "restore-mark": "restore"}
OPERATIONS = ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark")


@register
class ConnmarkTargetExt(Extension):
    name = "CONNMARK"
    terminal = False
    conntrack = True
    kind = "target"
    options = XMARK_OPTIONS + (
        Option("--save-mark", nargs=0), Option("--restore-mark", nargs=0),
        Option("--ctmask"), Option("--nfmask"), Option("--mask"),
        Option("--left-shift-mark"), Option("--right-shift-mark"),
    )

    def parse(self, acc, opt, invert, args, ctx):
        """Options apply in order, as iptables applies them: `--set-xmark 1/0xff --ctmask 0xf`
        ends with ctmask 0xf, `--ctmask 0xf --set-xmark 1/0xff` with 0xff."""
        key, what = opt.key, f"CONNMARK {opt.name}"
        if invert:
            raise ParseError(f"{what} cannot be inverted with `!`", code="bad-invert")
        seen = acc.setdefault("seen", [])
        if key in seen:
            raise ParseError(f"{what} given twice", code="duplicate-option")
        clash = [k for k in seen if (k in OPERATIONS and key in OPERATIONS)
                 or {k, key} in ({"mask", "ctmask"}, {"mask", "nfmask"})]
        if clash:
            raise ParseError(f"{what} cannot be combined with --{clash[0]}", code="conflicting-options",
                             hint="CONNMARK does one operation per rule" if key in OPERATIONS else None)
        seen.append(key)
        state = acc.setdefault("state", {"ctmask": ALL, "nfmask": ALL})
        if key in MODES:
            state["mode"] = MODES[key]
        elif key in OPERATIONS:
            state["mode"] = "set"
            state["ctmark"], state["ctmask"] = xmark_of(key, args[0], what)
        elif key in ("ctmask", "nfmask"):
            state[key] = parse_c_uint(args[0], what)
        elif key == "mask":
            state["ctmask"] = state["nfmask"] = parse_c_uint(args[0], what)
        else:
            bits = parse_c_uint(args[0], what, 0, 31)  # xtables allows 32, the kernel refuses it
            state["shift"], state["right"] = bits, key == "right-shift-mark"

    def finish(self, acc, ctx):
        state = acc.get("state", {})
        mode = state.get("mode")
        if mode is None:
            raise ParseError("CONNMARK: no operation given", code="missing-option",
                             hint="use --set-mark, --save-mark or --restore-mark (or --and/--or/--xor-mark)")
        shift = state.get("shift", 0)
        right = bool(shift) and state.get("right", False)
        if mode == "set":
            return ConnmarkTarget("set", state["ctmark"], state["ctmask"], ALL, shift, right)
        return ConnmarkTarget(mode, 0, state["ctmask"], state["nfmask"], shift, right)

    def act(self, d: ConnmarkTarget, pkt, env) -> None:
        """connmark_tg_shift: nothing without a conntrack entry; unknown inputs give unknown marks."""
        entry = has_entry(pkt, env)
        if entry is False:
            return
        ct, nf = env.ctmark, env.mark
        if d.mode == "restore":  # an entry that may be missing leaves the mark unknown
            base = 0 if d.nfmask == ALL else nf
            env.mark = None if base is None or ct is None or entry is None else (
                (base & ~d.nfmask) ^ shifted(ct & d.ctmask, d.shift, d.shift_right)) & ALL
            return
        base = 0 if d.ctmask == ALL else ct
        if d.mode == "set":
            env.ctmark = None if base is None else shifted((base & ~d.ctmask) ^ d.ctmark_value, d.shift,
                                                           d.shift_right)
        else:
            env.ctmark = None if base is None or nf is None else (
                (base & ~d.ctmask) ^ shifted(nf & d.nfmask, d.shift, d.shift_right)) & ALL

    def save(self, d: ConnmarkTarget) -> list[str]:
        if d.mode == "set":
            out = ["--set-xmark", f"{d.ctmark_value:#x}/{d.ctmask:#x}"]
        else:
            out = [f"--{d.mode}-mark", "--nfmask", f"{d.nfmask:#x}", "--ctmask", f"{d.ctmask:#x}"]
        if d.shift:
            out += ["--right-shift-mark" if d.shift_right else "--left-shift-mark", str(d.shift)]
        return out

    def nft(self, d: ConnmarkTarget, ctx) -> str:
        """set: ctmark := ((ctmark & ~ctmask) ^ value) shifted; save: ctmark := (ctmark & ~ctmask) ^
        ((mark & nfmask) shifted); restore: the same from ct mark to mark with the masks swapped. nft
        1.0.6 can only combine a register with constants, so save/restore keeping part of the old mark
        is refused."""
        op = ">>" if d.shift_right else "<<"
        if d.mode == "set":
            if d.ctmask == ALL:  # a constant, shifted here
                value = d.ctmark_value >> d.shift if d.shift_right else d.ctmark_value << d.shift & ALL
                return f"ct mark set {hexnum(value)}"
            expr = xmark("ct mark", d.ctmark_value, d.ctmask)
            return f"ct mark set ( {expr} ) {op} {d.shift}" if d.shift else f"ct mark set {expr}"
        dest_mask, src_mask, src, dest = ((d.ctmask, d.nfmask, "mark", "ct mark") if d.mode == "save"
                                          else (d.nfmask, d.ctmask, "ct mark", "meta mark"))
        if dest_mask != ALL:
            raise ctx.fail(f"CONNMARK --{d.mode}-mark keeping part of the old mark combines two registers, "
                           "which nft 1.0.6 cannot")
        expr = src if src_mask == ALL else f"{src} and {hexnum(src_mask)}"
        if not d.shift:
            return f"{dest} set {expr}"
        return f"{dest} set {expr} {op} {d.shift}" if src_mask == ALL else f"{dest} set ( {expr} ) {op} {d.shift}"
