"""The `stockade` command: parse arguments, call one function, print."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .model import Family
from .parse.command import Builder
from .parse.read import read
from .render.json import ruleset_json
from .render.save import render_save

EXIT_FINDINGS, EXIT_UNREADABLE = 1, 2


def _load(path: str, fmt: str = "auto", family: Family | None = None) -> Builder:
    """Read a ruleset file; unreadable input exits 2 with a one-line reason, never a traceback."""
    try:
        raw = Path(path).read_bytes()
        if b"\0" in raw:
            raise UnicodeError("binary data (NUL bytes)")
        text = raw.decode("utf-8")
    except (OSError, UnicodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        click.echo(f"{path}: error: cannot read input: {reason}", err=True)
        sys.exit(EXIT_UNREADABLE)
    return read(text, path, fmt, family)


def _family(value: str | None) -> Family | None:
    return Family(int(value)) if value else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """stockade: a host firewall for Linux servers that proves what it does."""


@main.command()
@click.argument("file")
@click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto", show_default=True,
              help="input format: iptables-save dump or shell script")
@click.option("--to", "out", type=click.Choice(["iptables-save", "json"]), default="iptables-save",
              show_default=True)
@click.option("--family", type=click.Choice(["4", "6"]), help="address family (default: guessed; all for scripts)")
def parse(file: str, fmt: str, out: str, family: str | None) -> None:
    """Read FILE and print it in canonical iptables-save form (or JSON)."""
    fam = _family(family)
    b = _load(file, fmt, fam)
    for d in b.diagnostics:
        if d.severity != "note":
            click.echo(str(d), err=True)
    rulesets = [rs for f, rs in sorted(b.rulesets.items()) if fam is None or f is fam]
    if out == "json":
        click.echo(json.dumps({"rulesets": [ruleset_json(rs) for rs in rulesets],
                               "diagnostics": [d.to_json() for d in b.diagnostics]}, indent=2))
    else:
        for rs in rulesets:
            click.echo(f"# {rs.family.cmd}-save (canonical, by stockade)")
            click.echo(render_save(rs), nl=False)
    sys.exit(EXIT_FINDINGS if any(d.severity == "error" for d in b.diagnostics) else 0)


@main.command()
@click.argument("file")
@click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--notes", is_flag=True, help="also show notes (skipped commands)")
def lint(file: str, fmt: str, as_json: bool, notes: bool) -> None:
    """Report defects in FILE: exit 0 if clean, 1 if there are errors, 2 if unreadable."""
    b = _load(file, fmt)
    shown = [d for d in b.diagnostics if notes or as_json or d.severity != "note"]
    errors = sum(d.severity == "error" for d in b.diagnostics)
    warnings = sum(d.severity == "warning" for d in b.diagnostics)
    if as_json:
        click.echo(json.dumps({"file": file, "errors": errors, "warnings": warnings,
                               "rules": sum(len(c.rules) for rs in b.rulesets.values()
                                            for t in rs.tables.values() for c in t.chains.values()),
                               "diagnostics": [d.to_json() for d in shown]}, indent=2))
    else:
        for d in shown:
            click.echo(str(d))
        click.echo(f"{file}: {errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(EXIT_FINDINGS if errors else 0)


@main.command()
@click.argument("ruleset")
@click.option("--packet", "spec", help='JSON object or short form, e.g. "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN"')
@click.option("--packets", "batch", type=click.File("r"), help="JSON Lines file: one packet spec per line")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (one line per packet in batch mode)")
@click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto", show_default=True)
def explain(ruleset: str, spec: str | None, batch, as_json: bool, fmt: str) -> None:
    """What the kernel does with a packet (or a JSON Lines file of packets) under RULESET."""
    from .semantics.explain import explain_batch, explain_one

    if (spec is None) == (batch is None):
        raise click.UsageError("give exactly one of --packet and --packets")
    b = _load(ruleset, fmt)
    sys.exit(explain_one(b, spec, as_json) if spec is not None else explain_batch(b, batch, as_json))


@main.command()
@click.argument("ruleset")
@click.option("--table", default="filter", show_default=True)
@click.option("--chain", default="INPUT", show_default=True, help="built-in chain; FORWARD for a router")
@click.option("--ipassmt", "ipassmt_path", help="interface-to-address map (fffuu's format or `IFACE ADDR ...` lines)")
@click.option("--routes", "routes_path", help="`ip route` output: read `-o X` as the destinations routed via X")
@click.option("--service", "services", multiple=True,
              help="tcp/22, udp/53, icmp/8 ... (repeatable; default: the ports the chain names, plus tcp/22)")
@click.option("--sport", type=click.IntRange(0, 65535), help="client source port  [default: 40000; fffuu: 10000]")
@click.option("--state", type=click.Choice(["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"]),
              default="NEW", show_default=True)
@click.option("--chain-only", is_flag=True, help="do not drop martian sources before the chain (as fffuu)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--from", "fmt", type=click.Choice(["auto", "save", "script"]), default="auto", show_default=True)
@click.option("--family", type=click.Choice(["4", "6"]), help="address family (default: every family with rules)")
def analyze(ruleset: str, table: str, chain: str, ipassmt_path: str | None, routes_path: str | None,
            services: tuple[str, ...],
            sport: int | None, state: str, chain_only: bool, as_json: bool, fmt: str, family: str | None) -> None:
    """Which sources may open which services to which destinations (service matrix), and the open ports."""
    from .semantics.analyze import Options, run_analyze

    fam = _family(family)
    opts = Options(table, chain, list(services), sport, state, not chain_only)
    sys.exit(run_analyze(_load(ruleset, fmt, fam), opts, ruleset, ipassmt_path, routes_path, fam, as_json))


def _policy(path: str):
    """Compile a policy or exit 1 with its positioned diagnostics."""
    from .policy.compile import compile_policy
    from .policy.schema import PolicyError

    try:
        return compile_policy(path)
    except PolicyError as e:
        for d in e.diagnostics:
            click.echo(str(d), err=True)
        sys.exit(EXIT_FINDINGS)


@main.command("compile")
@click.argument("policy")
@click.option("--target", type=click.Choice(["iptables", "nftables"]), default="iptables", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="directory to write into")
def compile_cmd(policy: str, target: str, out_dir: str) -> None:
    """Compile POLICY: rules.v4, rules.v6 and ipsets (iptables) or ruleset.nft (nftables)."""
    from .policy.output import write_outputs

    c = _policy(policy)
    for path in write_outputs(c, target, Path(out_dir)):
        click.echo(str(path))


@main.command()
@click.argument("policy")
@click.option("--json", "as_json", is_flag=True)
def check(policy: str, as_json: bool) -> None:
    """Validate and compile POLICY, have the real tools check it in a throwaway namespace, show what is open."""
    from .policy.check import check_with_tools
    from .policy.summary import egress_table, service_table

    c = _policy(policy)
    problems = check_with_tools(c)
    rows, out = service_table(c.policy), egress_table(c.policy)
    if as_json:
        click.echo(json.dumps({"policy": policy, "ok": not problems, "problems": problems, "services": rows,
                               "egress": out}, indent=2))
    else:
        click.echo(f"{'service':<12} {'ports':<18} {'from':<28} limit")
        for r in rows:
            click.echo(f"{r['service']:<12} {r['ports']:<18} {r['from']:<28} {r['limit'] or ''}")
        click.echo(f"\n{'outbound':<12} {'ports':<18} to")
        for r in out:
            click.echo(f"{r['service']:<12} {r['ports']:<18} {r['to']}")
        for prob in problems:
            click.echo(f"{policy}: error: {prob}", err=True)
        click.echo(f"{policy}: {'ok' if not problems else 'REFUSED by the real tools'}", err=True)
    sys.exit(EXIT_FINDINGS if problems else 0)


@main.command()
def demo() -> None:
    """Import a seed-style firewall script with classic mistakes; show what stockade finds."""
    from .demo import run_demo

    sys.exit(run_demo())


def _lab_report(report, as_json: bool) -> None:
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())
    sys.exit(EXIT_FINDINGS if report.mismatches else 0)


@main.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
@click.option("--family", type=click.Choice(["4", "6", "both"]), default="both", show_default=True)
def lab(target: str, as_json: bool, family: str) -> None:
    """Prove POLICY (.toml) or RULESET with real packets in throwaway namespaces; exit 1 on any mismatch."""
    from .lab.audit import run_audit
    from .lab.run import run_lab

    fams = list(Family) if family == "both" else [Family(int(family))]
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if target.endswith(".toml"):
        _policy(target)  # positioned errors, exit 1, before any namespace exists
        report = run_lab(target, say, fams)
    else:
        _load(target)
        report, _ = run_audit(target, Path(target).read_text(encoding="utf-8"), say, fams)
    _lab_report(report, as_json)


@main.command()
@click.argument("ruleset")
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
def audit(ruleset: str, as_json: bool) -> None:
    """What an imported script or dump really does to real packets (lab probes, simulator predictions)."""
    from .lab.audit import run_audit

    b = _load(ruleset)
    for d in b.diagnostics:
        if d.severity != "note":
            click.echo(str(d), err=True)
    report, _ = run_audit(ruleset, Path(ruleset).read_text(encoding="utf-8"), lambda m: click.echo(m, err=True))
    _lab_report(report, as_json)


if __name__ == "__main__":
    main()
