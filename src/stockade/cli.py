"""The `stockade` command: parse arguments, call one function, print."""
from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import click

from .model import Family
from .parse.command import Builder
from .parse.read import Unreadable, read, read_file
from .render.json import ruleset_json
from .render.save import render_save

EXIT_FINDINGS, EXIT_UNREADABLE = 1, 2


def _load(path: str, fmt: str = "auto", family: Family | None = None) -> Builder:
    """Read a ruleset file; unreadable input exits 2 with a one-line reason, never a traceback."""
    try:
        text = read_file(path)
    except OSError as e:
        click.echo(f"{path}: error: cannot read input: {e.strerror or e}", err=True)
        sys.exit(EXIT_UNREADABLE)
    except Unreadable as e:
        click.echo(str(e.diagnostic), err=True)
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
@click.option("--admin", "admins", multiple=True, metavar="ADDR",
              help="an address that must reach SSH (tcp/22); repeatable")
def lint(file: str, fmt: str, as_json: bool, notes: bool, admins: tuple[str, ...]) -> None:
    """Report defects in FILE and findings about what its rules do: exit 0 if clean, 1 if there
    are errors, 2 if unreadable."""
    from .parse.read import guess_format
    from .semantics.findings import lint as find

    b = _load(file, fmt)
    text = Path(file).read_text(encoding="utf-8")
    try:
        found = find(b, text, file, script=(fmt if fmt != "auto" else guess_format(text)) == "script",
                     admins=[str(ipaddress.ip_address(a)) for a in admins])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--admin") from None
    shown = [d for d in b.diagnostics if notes or as_json or d.severity != "note"]
    errors = sum(d.severity == "error" for d in b.diagnostics) + sum(f.severity == "error" for f in found)
    warnings = sum(d.severity == "warning" for d in b.diagnostics) + sum(f.severity == "warning" for f in found)
    if as_json:
        click.echo(json.dumps({"file": file, "errors": errors, "warnings": warnings,
                               "rules": sum(len(c.rules) for rs in b.rulesets.values()
                                            for t in rs.tables.values() for c in t.chains.values()),
                               "diagnostics": [d.to_json() for d in shown],
                               "findings": [f.to_json() for f in found]}, indent=2))
    else:
        for d in shown:
            click.echo(str(d))
        for f in found:
            click.echo(str(f))
        click.echo(f"{file}: {errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(EXIT_FINDINGS if errors else 0)


@main.command()
@click.argument("ruleset")
@click.option("--packet", "spec", help='JSON object or short form, e.g. "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN"')
@click.option("--packets", "batch", metavar="FILE", help="JSON Lines file: one packet spec per line (- for stdin)")
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
@click.option("--out", "out_dir", required=True, metavar="DIR", help="directory to write into")
def compile_cmd(policy: str, target: str, out_dir: str) -> None:
    """Compile POLICY: rules.v4, rules.v6 and ipsets (iptables) or ruleset.nft (nftables)."""
    from .files import WriteError
    from .policy.output import write_outputs

    c = _policy(policy)
    try:
        written = write_outputs(c, target, Path(out_dir))
    except WriteError as e:
        click.echo(f"{e.path}: error: cannot write: {e.reason}", err=True)
        sys.exit(EXIT_UNREADABLE)
    for path in written:
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


NETNS = click.option("--netns", help="network namespace to act in (default: this one)")


def _kernel(fn, *args, as_json: bool = False, **kw):
    """Run a kernel step; its refusal or failure is one line on stderr and a non-zero exit, never a traceback."""
    from .kernel.apply import Refused
    from .kernel.host import KernelError

    try:
        return fn(*args, **kw)
    except KernelError as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(e), "refused": isinstance(e, Refused),
                                   "blocked": [p.to_json() for p in getattr(e, "blocked", [])]}, indent=2))
        click.echo(f"stockade: error: {e}", err=True)
        if isinstance(e, Refused):
            click.echo("hint: fix the policy's admin group or ssh allowance, or pass --force if you are sure", err=True)
        sys.exit(EXIT_FINDINGS if isinstance(e, Refused) else EXIT_UNREADABLE)


@main.command()
@click.argument("policy")
@NETNS
@click.option("--confirm-timeout", default=60, show_default=True, type=click.IntRange(0, 86400),
              help="seconds until the previous ruleset comes back unless `stockade confirm` (0: no timer)")
@click.option("--force", is_flag=True, help="apply even if the SSH clients or admins would lose access")
@click.option("--backend", type=click.Choice(["auto", "nftables", "iptables-nft", "iptables-legacy"]), default="auto",
              show_default=True)
@click.option("--json", "as_json", is_flag=True)
def apply(policy: str, netns: str | None, confirm_timeout: int, force: bool, backend: str, as_json: bool) -> None:
    """Apply POLICY atomically; roll back after --confirm-timeout seconds unless confirmed."""
    from .kernel.apply import apply_policy

    c = _policy(policy)
    done = _kernel(apply_policy, c, policy, netns, confirm_timeout, force, backend, as_json=as_json,
                   progress=lambda m: click.echo(f"stockade: {m}", err=True))
    click.echo(json.dumps(done.to_json(), indent=2) if as_json else done.text(), nl=as_json)


@main.command()
@NETNS
@click.option("--json", "as_json", is_flag=True)
def confirm(netns: str | None, as_json: bool) -> None:
    """Keep the ruleset the last apply made live (stops its rollback timer)."""
    from .kernel.apply import confirm as do_confirm

    out = _kernel(do_confirm, netns, as_json=as_json)
    click.echo(json.dumps(out) if as_json else f"confirmed {out['confirmed']}")


@main.command()
@NETNS
@click.option("--json", "as_json", is_flag=True)
def rollback(netns: str | None, as_json: bool) -> None:
    """Restore the ruleset saved by the last apply, now."""
    from .kernel.apply import rollback as do_rollback

    out = _kernel(do_rollback, netns, as_json=as_json)
    click.echo(json.dumps(out) if as_json else f"restored {out['restored']} ({out['backend']})")


@main.command()
@NETNS
@click.option("--status", "show", is_flag=True, help="only say where the confirmed ruleset is persisted")
@click.option("--root", type=click.Path(file_okay=False), help="file system root to write under (default: /)")
@click.option("--json", "as_json", is_flag=True)
def persist(netns: str | None, show: bool, root: str | None, as_json: bool) -> None:
    """Write the confirmed ruleset where this system loads it at boot."""
    from .kernel.persist import persist as do_persist
    from .kernel.persist import persist_status

    out = _kernel(persist_status if show else do_persist, netns, root, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else out["text"])


@main.command()
@NETNS
@click.option("--json", "as_json", is_flag=True)
def status(netns: str | None, as_json: bool) -> None:
    """The live ruleset with counters per policy line, versions, drift and other tools' rules."""
    from .kernel.status import status as get_status
    from .kernel.status import status_text

    out = _kernel(get_status, netns, as_json=as_json)
    click.echo(json.dumps(out, indent=2) if as_json else status_text(out), nl=as_json)


@main.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (shape: semantics/diff.py)")
def diff_cmd(old: str, new: str, as_json: bool) -> None:
    """Packet classes whose verdict differs between OLD and NEW (each a dump, a script or a policy
    .toml): exit 0 if none, 1 if some, 2 if an input is unreadable or invalid."""
    from .policy.schema import PolicyError
    from .semantics.diff import load_rulesets, semantic_diff
    from .semantics.flatten import FlatError

    sides = []
    for path in (old, new):
        try:
            rulesets, diags = load_rulesets(path)
        except OSError as e:
            click.echo(f"{path}: error: cannot read input: {e.strerror or e}", err=True)
            sys.exit(EXIT_UNREADABLE)
        except Unreadable as e:  # also a dump iptables-restore refuses: a diff against part of it misleads
            for d in e.diagnostics:
                click.echo(str(d), err=True)
            sys.exit(EXIT_UNREADABLE)
        except PolicyError as e:
            for d in e.diagnostics:
                click.echo(str(d), err=True)
            sys.exit(EXIT_UNREADABLE)
        for d in diags:
            if d.severity == "error":
                click.echo(str(d), err=True)
        sides.append(rulesets)
    try:
        d = semantic_diff(*sides, progress=lambda m: click.echo(f"stockade: comparing {m}", err=True))
    except FlatError as e:
        click.echo(str(e.diagnostic), err=True)
        sys.exit(EXIT_UNREADABLE)
    click.echo(json.dumps(d.to_json(), indent=2) if as_json else d.text(), nl=as_json)
    sys.exit(EXIT_FINDINGS if d.changes else 0)


def _audit(path: str, say, families=None):
    """The lab's report on a ruleset file; exit 2 when the lab cannot hold it."""
    from .lab.audit import Unmappable, run_audit

    try:
        return run_audit(path, Path(path).read_text(encoding="utf-8"), say, families)[0]
    except Unmappable as e:
        click.echo(str(e.diagnostic), err=True)
        sys.exit(EXIT_UNREADABLE)


def _lab_report(report, as_json: bool) -> None:
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())
    sys.exit(EXIT_FINDINGS if report.mismatches else 0)


@main.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
@click.option("--family", type=click.Choice(["4", "6", "both"]), default="both", show_default=True)
def lab(target: str, as_json: bool, family: str) -> None:
    """Prove POLICY (.toml) or RULESET with real packets in throwaway namespaces; exit 1 on any mismatch."""
    from .lab.run import run_lab

    fams = list(Family) if family == "both" else [Family(int(family))]
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if target.endswith(".toml"):
        _policy(target)  # positioned errors, exit 1, before any namespace exists
        report = run_lab(target, say, fams)
    else:
        _load(target)
        report = _audit(target, say, fams)
    _lab_report(report, as_json)


@main.command()
@click.argument("ruleset")
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
def audit(ruleset: str, as_json: bool) -> None:
    """What an imported script or dump really does to real packets (lab probes, simulator predictions)."""
    b = _load(ruleset)
    for d in b.diagnostics:
        if d.severity != "note":
            click.echo(str(d), err=True)
    report = _audit(ruleset, lambda m: click.echo(m, err=True))
    _lab_report(report, as_json)


if __name__ == "__main__":
    main()
