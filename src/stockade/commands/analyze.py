"""`stockade analyze`: the service matrices and open ports of one chain, as text for an admin or JSON."""
from __future__ import annotations

import json
import sys

import click

from ..model import Family
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Loaded, Source, load, read_text


def _services(_ctx, _param, labels: tuple[str, ...]) -> list[str]:
    """Each --service checked before any analysis: a bad one is a usage error (exit 2)."""
    from ..semantics.matrix import parse_service

    for label in labels:
        try:
            parse_service(label, Family.IPV4)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return list(labels)


@click.command("analyze")
@click.argument("ruleset", required=False)
@click.option("--table", default="filter", show_default=True)
@click.option("--chain", default="INPUT", show_default=True, help="built-in chain; FORWARD for a router")
@click.option("--ipassmt", "ipassmt_path", help="interface-to-address map (fffuu's format or `IFACE ADDR ...` lines)")
@click.option("--routes", "routes_path", help="`ip route` output: read `-o X` as the destinations routed via X")
@click.option("--service", "services", multiple=True, callback=_services,
              help="tcp/22, udp/53, icmp/8 ... (repeatable; default: the ports the chain names, plus tcp/22)")
@click.option("--sport", type=click.IntRange(0, 65535), help="client source port  [default: 40000; fffuu: 10000]")
@click.option("--state", type=click.Choice(["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"]),
              default="NEW", show_default=True)
@click.option("--chain-only", is_flag=True, help="do not drop martian sources before the chain (as fffuu)")
@options.as_json("machine-readable output")
@options.reading
def command(ruleset: str | None, table: str, chain: str, ipassmt_path: str | None, routes_path: str | None,
            services: list[str], sport: int | None, state: str, chain_only: bool, as_json: bool,
            src: Source) -> None:
    """Which sources may open which services to which destinations (service matrix), and the open ports."""
    from ..semantics.analyze import Options, analyze_ruleset, families
    from ..semantics.ipassmt import IpAssmtError, parse_ipassmt, parse_routes

    opts = Options(table, chain, services, sport, state, not chain_only)
    got = load(ruleset, src, nft=True)
    maps = [(key, path, read_text(path, f"{key} file"), reader)
            for key, path, reader in (("ipassmt", ipassmt_path, parse_ipassmt), ("routes", routes_path, parse_routes))
            if path is not None]
    if got.nft is not None:
        if routes_path is not None:
            raise click.BadParameter("a routing table is not read for nftables rulesets (only --ipassmt)",
                                     param_hint="--routes")
        sys.exit(_nft(got, opts, src.family, as_json, maps))
    b, ruleset, family = got.builder, got.name, src.family
    kept = {(err.origin, err.message) for err, _ in b.kept}
    for d in b.for_analysis():
        if d.severity == "error":
            what = "the rule stays in as a match that may or may not hold" if (d.origin, d.message) in kept \
                else "that line is left out of the analysis"
            click.echo(f"{d}\n  note: {what}", err=True)
        elif d.code == "unread-value":
            click.echo(str(d), err=True)
    results, map_errors = [], []
    for rs in families(b.rulesets, family):
        try:
            read = {key: reader(text, path, rs.family) for key, path, text, reader in maps}
        except IpAssmtError as e:  # a map of the other family: that family is not analysed
            map_errors.append(e)
            continue
        results.append(analyze_ruleset(rs, opts, read.get("ipassmt"), read.get("routes")))
    if map_errors and not results:
        raise map_errors[0]
    if not results:
        click.echo(f"{ruleset}:1:1: error: no {'IPv' + str(int(family)) + ' ' if family else ''}rules to analyse",
                   err=True)
        sys.exit(FINDINGS)
    _show(results, ruleset, as_json)
    # lines the kernel would refuse were left out (or kept with an unknown value): the kernel would not load
    # the ruleset given
    sys.exit(FINDINGS if any(d.severity == "error" for d in b.diagnostics) else OK)


def _show(results: list[dict], name: str, as_json: bool) -> None:
    """One result per family: JSON (the first family's at the top, IPv6 under `ipv6`) or text."""
    if as_json:
        top = dict(results[0])
        if len(results) > 1:
            top["ipv6"] = results[1]
        click.echo(json.dumps(top, indent=2))
    else:
        click.echo("\n\n".join(render_text(r, name) for r in results))


def _nft(got: Loaded, opts, family: Family | None, as_json: bool, maps: list) -> int:
    """An nftables ruleset: every base chain at every hook composed (semantics/cellmatrix.py); an
    interface map of one family leaves the other out, as for iptables."""
    from ..semantics.cellmatrix import analyze_side
    from ..semantics.ipassmt import IpAssmtError

    if opts.chain.upper() not in ("INPUT", "FORWARD", "OUTPUT"):
        raise click.BadParameter("on nftables, INPUT, FORWARD or OUTPUT: the hooks a packet's path ends at",
                                 param_hint="--chain")
    side = got.side()
    results, map_errors = [], []
    for fam in [family] if family else list(Family):
        try:
            amap = next((reader(text, path, fam) for _key, path, text, reader in maps), None)
        except IpAssmtError as e:
            map_errors.append(e)
            continue
        results.append(analyze_side(side, fam, opts, amap))
    if not results:
        raise map_errors[0]
    _show(results, got.name, as_json)
    return OK


def render_text(res: dict, file: str) -> str:
    """The result as an admin reads it: classes, who reaches whom, what is undecided and why."""
    fam = "IPv4" if res["family"] == 4 else "IPv6"
    lines = [f"{file}: {res['chain']} ({fam}), {res['flat_rules']} rules after flattening"]
    lines += [f"  assuming {a}" for a in res["assumptions"]]
    for label, m in res["service_matrix"].items():
        lines.append("")
        lines.append(f"{label}: {len(m['classes'])} address class(es)")
        for name, ranges in m["classes"].items():
            shown = ", ".join(ranges[:4]) + (f", ... (+{len(ranges) - 4} more)" if len(ranges) > 4 else "")
            lines.append(f"  {name:>3} = {shown}")
        always = {tuple(e) for e in m["always"]}
        reach: dict[str, list[str]] = {}
        for a, b in m["edges"]:
            reach.setdefault(a, []).append(b if (a, b) in always else b + "?")
        if not reach:
            lines.append("  nobody may open this connection")
        for a, targets in reach.items():
            lines.append(f"  {a:>3} -> {' '.join(targets)}")
        reasons: dict[str, int] = {}
        for u in m["undecided"]:
            for r in u["depends_on"]:
                reasons[r] = reasons.get(r, 0) + 1
        if reasons:
            lines.append("  ? = may be allowed, depending on:")
            lines += [f"      {r}: {res['undecided_rules'].get(r, '')}" for r in reasons]
    if "open_ports" in res:
        lines.append("")
        lines.append("open ports (what a scanner sees, per source):")
        for e in res["open_ports"]:
            src = ", ".join(e["sources"][:3]) + (f", ... (+{len(e['sources']) - 3} more)" if len(e["sources"]) > 3
                                                 else "")
            lines.append(f"  from {src}:")
            if not e["open"] and not e["maybe"]:
                lines.append("    nothing")
            for kind in ("open", "maybe"):
                for proto, items in e[kind].items():
                    lines.append(f"    {kind:<5} {proto:<4} {', '.join(items)}")
    return "\n".join(lines)
