"""Real iptables-save dumps (corpus net-network) parse cleanly and re-render identically.

Every file holding `*table` lines in iptables-save/restore format must parse
with no error diagnostic, and stockade's canonical rendering must reproduce its
rule lines exactly (comment/header lines, counters and white space at line ends
ignored). Unknown extensions are warnings and are re-rendered verbatim.

Most dumps were written by iptables 1.3-1.6; stockade prints what iptables 1.8
prints. Where the two differ, the rewrite of the expected text is listed in
NORMALISATIONS with the reason, each checked against iptables 1.8.9 in a network
namespace; nothing else is normalised. Anonymisation placeholders that no
iptables accepts are replaced by valid stand-ins (PLACEHOLDERS).
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from stockade.extensions import Opaque, Unread
from stockade.model import Family
from stockade.parse.save import guess_family, read_save
from stockade.render.save import render_save

from .corpus import NET_NETWORK

TABLE_LINE = re.compile(r"^\*(filter|nat|mangle|raw|security)\s*$", re.MULTILINE)

# Files with `*table` lines that are nevertheless not iptables-save/restore input.
NOT_DUMPS = {
    "configs_corny_docker/dfwfw/fffuu.out.txt":
        "fffuu's analysis output (ipassmt, routing table, simplified ruleset, service matrix), not restore input",
}
# Dumps quoted inside other text: only the part from the first `# Generated` line to the last COMMIT is the dump.
EMBEDDED = {
    "blog_a-unikernel-firewall-for-qubesos/iptables-save":
        "a blog post quoting the dump: prose before it and `ip addr` output after it",
}
# Hand-written restore input (no iptables-save header) in non-canonical forms (`-p tcp --dport 22`
# without `-m tcp`, `-j REJECT` without `--reject-with`, `--src`, runs of blanks): stockade rightly
# prints them differently, so these are checked for a clean parse, the rule count and a stable rendering.
HAND_WRITTEN = {
    "configs_serverfault/766198.txt": "pasted from a question; no iptables-save header",
    "majek_dump_vpn/vpn/iptables.up.rules": "a hand-written iptables-restore file",
}


@dataclass(frozen=True)
class Rewrite:
    """A rewrite of one dump's text, applied to the expected lines (and to stockade's input if `input`)."""

    name: str
    files: tuple[str, ...]  # path prefixes relative to NET_NETWORK; () = every dump
    apply: Callable[[str, Family], str]  # one `-A` line -> rewritten line
    reason: str
    input: bool = False


def _sub(pattern: str, repl) -> Callable[[str, Family], str]:
    rx = re.compile(pattern)
    return lambda line, family: rx.sub(repl, line)


def _recent_mask(line: str, family: Family) -> str:
    full = "255.255.255.255" if family is Family.IPV4 else "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    parts = line.split(" -m ")
    for i, part in enumerate(parts):
        if part.startswith("recent ") and "--mask" not in part:
            parts[i] = re.sub(r"(--name \S+)", rf"\1 --mask {full}", part, count=1)
    return " -m ".join(parts)


def _mask_host_bits(m: re.Match) -> str:
    return f"{m.group(1)} {ipaddress.ip_network(m.group(2), strict=False)}"


def _dotted_mask(m: re.Match) -> str:
    return f"{m.group(1)} {ipaddress.ip_network(m.group(2) + '/' + m.group(3)).with_prefixlen}"


PLACEHOLDERS = {
    "XX:XX:XX:XX:XX:XX": "00:00:5e:00:53:00",  # TUM dumps: every MAC anonymised; RFC 7042 documentation MAC
    "<private_ip>": "192.0.2.1",  # config_private_root: address withheld; TEST-NET-1
}

TUM = "configs_chair_for_Network_Architectures_and_Services/"
UGENT = "configs_ugent/"
NORMALISATIONS = (
    Rewrite("recent-default-mask", (),
            _recent_mask,
            "iptables >= 1.4.16 prints the recent match's --mask, also the default 255.255.255.255 "
            "(ffff:...:ffff for IPv6) that older versions left out; iptables 1.8.9 prints it after --name"),
    Rewrite("anonymised-host-bits",
            ("config_internal_office_fw/", "config_eduroam_laptop/", "configs_serverfault/762193.txt"),
            _sub(r"((?:^|\s)-[sd]) (\d+\.\d+\.\d+\.\d+/\d+)(?=\s)", _mask_host_bits),
            "addresses were anonymised by hand, leaving host bits set (e.g. 131.159.198.38/19); "
            "iptables-save never prints those: iptables 1.8.9 loads them as 131.159.192.0/19"),
    Rewrite("icmpv6-name", ("configs_synology_diskstation_ds414/ip6tables-save_jul_2016",),
            _sub(r"-p icmpv6 ", "-p ipv6-icmp "),
            "ip6tables 1.6.0 printed protocol 58 as `icmpv6`; 1.8 prints the /etc/protocols name `ipv6-icmp`"),
    Rewrite("intrapositional-negation", (UGENT,),
            _sub(r"(-[sd]) ! (\S+)", r"! \1 \2"),
            "iptables 1.3.5 printed `-d ! ADDR`; iptables 1.8.9 refuses that form (`Bad argument`) and "
            "prints `! -d ADDR` (stockade's refusal of the old form is checked in test_old_negation_refused)",
            input=True),
    Rewrite("host-without-prefix", (UGENT,),
            _sub(r"((?:^|\s)-[sd]) (\d+\.\d+\.\d+\.\d+)(?=\s)", r"\1 \2/32"),
            "iptables 1.3.5 printed single hosts without /32; 1.8 always prints the prefix length"),
    Rewrite("dotted-netmask", (UGENT,),
            _sub(r"((?:^|\s)-[sd]) (\d+\.\d+\.\d+\.\d+)/(\d+\.\d+\.\d+\.\d+)(?=\s)", _dotted_mask),
            "iptables 1.3.5 printed contiguous netmasks dotted (/255.255.255.0); 1.8 prints /24"),
)


@dataclass(frozen=True)
class ExpectedError:
    pattern: str  # regex a rule line must contain
    code: str
    reason: str


# Lines of real dumps that iptables 1.8 itself refuses: stockade must refuse them too, with this code.
EXPECTED_ERRORS = (
    ExpectedError(r"--dport 60000:29 ", "bad-port",
                  "backwards port range: iptables >= 1.8.10 refuses it (libxt_tcp.t/libxt_udp.t `--sport 4:3;;FAIL`; "
                  "the .t files are our reference); 1.4.14 and 1.8.9 accepted it as a range matching nothing"),
    ExpectedError(r"(?m)^COMMIT[ \t]+$", "restore-whitespace",
                  "iptables-restore 1.8.9 refuses `COMMIT ` (Bad argument `COMMIT'); 1.4 accepted it"),
    ExpectedError(r"(?m)^[ \t]+$", "restore-whitespace",
                  "iptables-restore 1.8.9 refuses a line of only white space (no command specified); 1.4 skipped it"),
)


def corpus() -> tuple[list[str], dict[str, str]]:
    """(dumps to check, {skipped file: why}) over every file of net-network."""
    dumps, skipped = [], {}
    for path in sorted(p for p in NET_NETWORK.rglob("*") if p.is_file()):
        rel = path.relative_to(NET_NETWORK).as_posix()
        text = path.read_text(errors="replace")
        if rel in NOT_DUMPS:
            skipped[rel] = NOT_DUMPS[rel]
        elif TABLE_LINE.search(text):
            dumps.append(rel)
        elif text.lstrip().startswith("#nft") or re.search(r"^\s*table (ip|ip6|inet) ", text, re.MULTILINE):
            skipped[rel] = "nftables ruleset (`nft list ruleset`), not iptables-save format"
        else:
            skipped[rel] = "no `*table` line: description, licence or fffuu input text"
    return dumps, skipped


DUMPS, SKIPPED = corpus() if NET_NETWORK.is_dir() else ([], {})


def dump_text(rel: str) -> str:
    """The dump as iptables-restore would get it: embedded dumps cut out, placeholders replaced."""
    text = (NET_NETWORK / rel).read_text()
    if rel in EMBEDDED:
        lines = text.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.startswith("# Generated"))
        end = max(i for i, ln in enumerate(lines) if ln.strip() == "COMMIT")
        text = "\n".join(lines[start:end + 1]) + "\n"
    for old, new in PLACEHOLDERS.items():
        text = text.replace(old, new)
    return text


def rewrites(rel: str) -> list[Rewrite]:
    return [r for r in NORMALISATIONS if not r.files or rel.startswith(r.files)]


def rewrite_text(text: str, family: Family, rules: list[Rewrite], used: Counter | None = None) -> str:
    """`text` with `rules` applied to its `-A` lines; `used` counts the lines each rule changed."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("-A "):
            for r in rules:
                new = r.apply(line, family)
                if used is not None and new != line:
                    used[r.name] += 1
                line = new
        out.append(line)
    return "\n".join(out) + "\n"


def rule_lines(text: str) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(line number, `-A` line) per (table, chain); counters and trailing blanks dropped."""
    out: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    table = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"^\s*\[\d+:\d+\]\s*", "", line).rstrip()
        if TABLE_LINE.match(line):
            table = line[1:].strip()
        elif line.startswith("-A "):
            out[(table, line.split()[1])].append((lineno, line))
    return out


def parse(rel: str, text: str):
    family = guess_family(text)
    b = read_save(text, rel, family)
    return family, b, b.ruleset(family)


def test_selection():
    """Which files are checked, which are not, and why (printed; run with -s)."""
    print(f"\n{len(DUMPS)} dumps checked; skipped:")
    for rel, why in SKIPPED.items():
        print(f"  {rel}: {why}")
    for rel, why in {**EMBEDDED, **HAND_WRITTEN}.items():
        print(f"  (checked specially) {rel}: {why}")
    if not NET_NETWORK.is_dir():
        pytest.skip(f"corpus not found at {NET_NETWORK}")
    assert len(DUMPS) >= 67  # the README lists 68 ruleset files, one of them the nft ruleset
    assert all(rel in DUMPS for rel in (*EMBEDDED, *HAND_WRITTEN))
    for r in NORMALISATIONS:
        assert all(any(d.startswith(f) for d in DUMPS) for f in r.files), f"stale normalisation {r.name}"


@pytest.mark.parametrize("rel", DUMPS)
def test_dump(rel):
    text = dump_text(rel)
    family = guess_family(text)
    rules, used = rewrites(rel), Counter()
    given = rewrite_text(text, family, [r for r in rules if r.input], used)
    family, b, rs = parse(rel, given)

    # Errors: none, except on lines iptables 1.8 refuses as well.
    lines = given.splitlines()
    expected_bad: set[int] = set()
    problems = []
    for d in b.diagnostics:
        if d.severity != "error":
            continue
        src = lines[d.origin.line - 1] if 0 < d.origin.line <= len(lines) else ""
        known = next((e for e in EXPECTED_ERRORS if re.search(e.pattern, src)), None)
        if known and known.code == d.code:
            expected_bad.add(d.origin.line)
        else:
            problems.append(f"{d}\n    {src.strip()[:200]}")
    assert not problems, f"{rel}: {len(problems)} error diagnostics:\n" + "\n".join(problems[:30])

    # Unknown extensions: a warning on the line, and kept in the model.
    warned = {d.origin.line for d in b.diagnostics if d.code == "unknown-extension"}
    kept = [(r.origin.line, x.name) for t in rs.tables.values() for c in t.chains.values() for r in c.rules
            for x in [*r.matches, r.target] if x is not None and isinstance(x.data, Opaque)
            and not isinstance(x.data, Unread)]  # a stand-in for a refused line: its error says why
    unwarned = sorted({line for line, _ in kept if line not in warned})
    assert not unwarned, f"{rel}: opaque extensions without a warning on lines {unwarned[:10]}"
    opaque = sorted({name for _, name in kept})

    rendered = {k: [ln for _, ln in v] for k, v in rule_lines(render_save(rs)).items()}
    count = sum(map(len, rendered.values()))
    expected = rule_lines(rewrite_text(given, family, [r for r in rules if not r.input], used))
    print(f"\n{rel}: {count} rules ({family.cmd}); kept verbatim: {', '.join(opaque) or 'none'}; "
          f"normalised: {', '.join(f'{n} ({k} lines)' for n, k in used.items()) or 'nothing'}")

    if rel in HAND_WRITTEN:
        source = rule_lines(given)
        assert count == sum(map(len, source.values())) - len(expected_bad)
        again = render_save(parse(rel, render_save(rs))[2])
        assert again == render_save(rs), f"{rel}: rendering is not stable"
        return

    diffs = []
    for key in sorted(set(expected) | set(rendered)):
        want = [ln for lineno, ln in expected.get(key, []) if lineno not in expected_bad]
        got = rendered.get(key, [])
        if want != got:
            diffs += [f"*{key[0]} {key[1]}:"] + list(difflib.unified_diff(want, got, "dump", "stockade",
                                                                                  lineterm="", n=0))[2:]
    assert not diffs, f"{rel}: rendering differs from the dump (- dump, + stockade):\n" + "\n".join(diffs[:60])


def test_old_negation_refused():
    """`-d ! ADDR` (iptables <= 1.4.2 output) is refused, as iptables 1.8.9 refuses it."""
    text = dump_text(UGENT + "iptables-save")
    _, b, _ = parse("ugent", text)
    lines = text.splitlines()
    errors = [d for d in b.diagnostics if d.severity == "error"]
    assert errors and all(" ! " in lines[d.origin.line - 1] for d in errors)
    assert len(errors) == sum(1 for ln in lines if re.search(r"-[sd] ! ", ln))


def test_no_stale_exemptions():
    """Every normalisation changes some line and every expected error matches some line."""
    if not DUMPS:
        pytest.skip(f"corpus not found at {NET_NETWORK}")
    used = Counter()
    for rel in DUMPS:
        text = dump_text(rel)
        rewrite_text(text, guess_family(text), rewrites(rel), used)
    print("\nnormalised lines over the corpus:", dict(used))
    assert {r.name for r in NORMALISATIONS} == set(used)
    for e in EXPECTED_ERRORS:
        assert any(re.search(e.pattern, dump_text(rel)) for rel in DUMPS), e.pattern
