"""-m set: membership of the packet's addresses/ports in an ipset (xt_set, revision 4)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, dims_of, neg, set_family
from ..model.space import DST, SRC
from .base import Extension, Option, register
from .ipset import CounterTest, Unknowable, contents, set_test
from .values import check_printable, parse_c_uint

MAX_NAME = 31  # IPSET_MAXNAMELEN - 1
MAX_DIMS = 6  # IPSET_DIM_MAX
COUNTER_OPS = ("eq", "lt", "gt")


@dataclass(frozen=True)
class SetMatch:
    """True when the tuple taken from the packet, one part per entry of `dirs` ("src":
    source address/port/..., "dst": destination), is an element of ipset `name`, and the
    element's counters pass `packets`/`bytes` if given; `!` negates. return_nomatch makes
    an element stored with the nomatch flag count as a match and a plain one as a miss.
    A matched element's packet/byte counters are bumped unless update_counters (for the
    set itself) / update_subcounters (for members of a list:set) are False."""

    name: str
    dirs: tuple[str, ...]
    invert: bool = False
    return_nomatch: bool = False
    update_counters: bool = True
    update_subcounters: bool = True
    packets: CounterTest | None = None
    bytes: CounterTest | None = None


def parse_dirs(word: str) -> tuple[str, ...]:
    """`src,dst,...`: like ipset's own parser, only the first three letters are compared."""
    parts = word.split(",")
    if len(parts) > MAX_DIMS:
        raise ParseError(f"set: {len(parts)} src/dst flags in `{word}`; at most {MAX_DIMS}", code="bad-set-flags")
    if not all(p[:3] in ("src", "dst") for p in parts):
        raise ParseError(f"set: bad flags `{word}`", code="bad-set-flags",
                         hint="write a comma-separated list of src and dst, one per set dimension, e.g. src,dst")
    return tuple(p[:3] for p in parts)


@register
class SetMatchExt(Extension):
    name = "set"
    options = (
        Option("--match-set", ("--set",), nargs=2, invertible=True),
        Option("--return-nomatch", nargs=0),
        Option("--update-counters", nargs=0, invertible=True),
        Option("--update-subcounters", nargs=0, invertible=True),
        *(Option(f"--{what}-{op}", invertible=op == "eq") for what in ("packets", "bytes") for op in COUNTER_OPS),
    )

    def parse(self, acc, opt, invert, args, ctx):
        key = opt.key
        if invert and not opt.invertible:
            raise ParseError(f"set: {opt.name} cannot be inverted with `!`", code="bad-invert")
        if key == "match-set":
            if key in acc:
                raise ParseError("set: --match-set can be given only once per -m set", code="duplicate-option",
                                 hint="add another `-m set --match-set ...` for a second set")
            name, flags = args
            if flags.startswith(("-", "!")):
                raise ParseError("set: --match-set needs two arguments, the set name and src/dst flags",
                                 code="missing-argument", hint="e.g. --match-set blocklist src")
            check_printable(name, "set name")
            if not 0 < len(name) <= MAX_NAME or any(c.isspace() or c in "\"'\\" for c in name):
                raise ParseError(f"set: `{name}` is not a valid set name (1-{MAX_NAME} characters, "
                                 "no blanks or quotes, which iptables-save could not print back)",
                                 code="bad-set-name")
            if ctx.known_sets is not None and name not in ctx.known_sets:
                raise ParseError(f"set: ipset `{name}` does not exist", code="unknown-set",
                                 hint=f"create it first (ipset create {name} TYPE)")
            acc[key] = (invert, name, parse_dirs(flags))
        elif key == "return-nomatch":
            acc[key] = True
        elif key in ("update-counters", "update-subcounters"):
            acc[f"no-{key}"] = acc.get(f"no-{key}", False) or invert  # without `!` it is the default
        else:
            what, op = key.split("-")
            if what in acc:
                raise ParseError(f"set: only one of --{what}-eq, --{what}-lt and --{what}-gt is allowed",
                                 code="conflicting-options")
            acc[what] = CounterTest("ne" if invert else op, parse_c_uint(args[0], f"set {opt.name}", 0, 2**64 - 1))

    def finish(self, acc, ctx):
        if "match-set" not in acc:
            raise ParseError("set: --match-set NAME FLAGS is required", code="missing-option")
        invert, name, dirs = acc["match-set"]
        return SetMatch(name, dirs, invert, acc.get("return-nomatch", False),
                        not acc.get("no-update-counters", False), not acc.get("no-update-subcounters", False),
                        acc.get("packets"), acc.get("bytes"))

    def holds(self, d: SetMatch, pkt, env) -> bool | None:
        """set_match_v4 -> ip_set_test -> the type's kadt and test: None when the set's contents
        (env.sets) are not known or not modelled, or the packet lacks what the set looks at."""
        flags = {"return_nomatch": d.return_nomatch, "skip": not d.update_counters,
                 "skip_sub": not d.update_subcounters,
                 "counters": (d.packets, d.bytes) if d.packets or d.bytes else None}
        try:
            return set_test(contents(env, d.name), d.dirs, env.pkt, env, flags) != d.invert
        except Unknowable:
            return None

    def constraint(self, d: SetMatch, frame):
        """A plain hash:ip or hash:net set of one direction is a set of addresses; other types,
        nomatch, timeouts and counter tests are left to the simulator."""
        s = frame.sets.get(d.name)
        if s is None or len(d.dirs) != 1 or d.return_nomatch or d.packets or d.bytes \
                or s.type not in ("hash:ip", "hash:net"):
            return None
        pairs = []
        for member in s.members:
            words = member.split()
            if len(words) != 1:
                return None
            try:
                net = ipaddress.ip_network(words[0], strict=False)
            except ValueError:
                return None
            if net.version == int(frame.family):
                pairs.append((int(net.network_address), int(net.broadcast_address)))
        dim = SRC if d.dirs[0] == "src" else DST
        return {dim: frame.within(dim, pairs, d.invert)}

    def save(self, d: SetMatch) -> list[str]:
        out = (["!"] if d.invert else []) + ["--match-set", d.name, ",".join(d.dirs)]
        out += ["--return-nomatch"] if d.return_nomatch else []
        out += [] if d.update_counters else ["!", "--update-counters"]
        out += [] if d.update_subcounters else ["!", "--update-subcounters"]
        for what, test in (("packets", d.packets), ("bytes", d.bytes)):
            if test is not None:
                out += (["!", f"--{what}-eq"] if test.op == "ne" else [f"--{what}-{test.op}"]) + [str(test.value)]
        return out

    def nft(self, d: SetMatch, ctx) -> list[Part]:
        """`KEY @set`: one key part per ipset dimension, from the source or destination the flags name."""
        if d.return_nomatch or d.packets is not None or d.bytes is not None:
            raise ctx.fail("set: --return-nomatch and counter tests have no nftables equivalent")
        if ctx.ipsets is None or d.name not in ctx.ipsets:
            raise ctx.fail(f"set: ipset {d.name} is not part of the ruleset")
        name, s = ctx.ipsets[d.name]
        dims = dims_of(s)
        if len(d.dirs) < len(dims):
            raise ctx.fail(f"set: {s.type} needs {len(dims)} src/dst flags, the rule gives {len(d.dirs)}")
        if ("ip" in dims or "net" in dims) and set_family(s) is not ctx.family:
            raise ctx.fail(f"set: ipset {d.name} holds IPv{int(set_family(s))} addresses")
        keys = []
        for dim, side in zip(dims, d.dirs):
            if dim in ("ip", "net"):
                keys.append(f"{ctx.ip} {side[0]}addr")
            elif dim == "port":
                keys.append(f"meta l4proto . th {side[0]}port")
            else:
                keys.append(f"ether {side[0]}addr")
        family = ctx.nfproto if keys[0].startswith("ip") else None
        return [Part(f"{' . '.join(keys)} {neg(d.invert)}@{name}", family)]
