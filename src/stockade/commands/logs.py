"""`stockade logs`: the kernel's LOG lines (or the NFLOG messages of a group, heard for a while) per policy
line, top sources, ports, services and a timeline, as rich tables, JSON, or one self-contained HTML page
with plots (commands/loghtml.py)."""
from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from . import options
from .exitcodes import OK


@click.command("logs")
@click.option("--since", metavar="AGE|DATE", help="only lines this recent: 30m, 1h, 2d, or an ISO date")
@click.option("--source", default="journal", show_default=True, metavar="journal|FILE|nflog",
              help="the journal (journalctl -k), a saved kernel log (kern.log, dmesg, /dev/kmsg records), or "
                   "nflog: listen to an NFLOG group in --netns from now on")
@click.option("--group", type=click.IntRange(0, 65535), metavar="N",
              help="with --source nflog: the group (default: the policy's `[log] group`, else 0)")
@click.option("--for", "seconds", type=click.FloatRange(0, 86400 * 366, min_open=True), metavar="SECONDS",
              help="with --source nflog: stop after this long (default: at ^C or SIGTERM); then report")
@click.option("--policy", type=click.Path(dir_okay=False), help="the policy whose LOG prefixes to map (default: "
              "the one applied last in --netns)")
@options.NETNS
@options.as_json()
@click.option("--html", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="also write one self-contained HTML page with plots (no network needed to view it)")
def command(since: str | None, source: str, group: int | None, seconds: float | None, policy: str | None,
            netns: str | None, as_json: bool, html: str | None) -> None:
    """The kernel's LOG lines mapped to the policy lines that logged them; foreign prefixes grouped."""
    from ..kernel.logs import file_lines, journal_lines, read_log, since_time

    try:
        start = since_time(since)
    except ValueError:
        raise click.BadParameter(f"`{since}` is neither an age (30m, 1h, 2d) nor an ISO date",
                                 param_hint="--since") from None
    if source == "nflog" and since is not None:
        raise click.UsageError("--since reads back a saved log; --source nflog hears packets from now on")
    if source != "nflog" and (group is not None or seconds is not None):
        raise click.UsageError("--group and --for are for --source nflog")
    known, texts, note = _prefixes(policy, netns)
    if note:
        click.echo(f"stockade: {note}", err=True)
    lost = None
    if source == "nflog":
        report, lost = _nflog(known, group, seconds, netns, not as_json and sys.stderr.isatty())
    else:
        with _progress(not as_json and sys.stderr.isatty()) as progress:
            lines = journal_lines(start) if source == "journal" else file_lines(Path(source), progress)
            report = read_log(lines, known, start)
    if source == "journal" and not report.read:
        click.echo("stockade: the journal holds no kernel lines here; read a file: --source /var/log/kern.log",
                   err=True)
    out = report.to_json(texts)
    if lost is not None:
        out["lost"] = lost
    if html:
        from ..files import write_atomic
        from .loghtml import page

        write_atomic(Path(html), page(report, out, "NFLOG messages" if source == "nflog" else "LOG lines"), 0o644)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        _tables(report, out, "NFLOG message(s)" if source == "nflog" else "LOG line(s)")
    sys.exit(OK)


def _nflog(known: dict, group: int | None, seconds: float | None, netns: str | None, shown: bool):
    """Listen to the NFLOG group (given, or the policy's) in --netns until --for passes or a signal comes:
    (the report, how often the kernel dropped messages because the socket's buffer was full)."""
    from ..kernel.host import Host
    from ..kernel.logs import read_packets
    from ..kernel.nflog import Listener

    groups = sorted({k.group for k in known.values() if k.group is not None})
    if known and not groups:
        click.echo("stockade: this policy logs with LOG, not NFLOG: its lines are in the kernel log "
                   "(--source journal)", err=True)
    elif group is not None and groups and group not in groups:
        click.echo(f"stockade: this policy logs to NFLOG group {', '.join(map(str, groups))}, not {group}", err=True)
    listener = Listener(Host(netns), group if group is not None else (groups[0] if groups else 0))
    where = f" in {netns}" if netns else ""
    span = f"for {seconds:g} s" if seconds is not None else "until ^C or SIGTERM"

    def ready():
        click.echo(f"stockade: listening on NFLOG group {listener.group}{where} {span}", err=True)

    with _stop_signals() as stopped, _listening(shown) as progress:
        report = read_packets(listener.packets(seconds, stopped, progress, ready), known)
    if listener.lost:
        click.echo(f"stockade: the socket's buffer overflowed {listener.lost} time(s): the kernel dropped NFLOG "
                   "messages, so counts are short", err=True)
    return report, listener.lost


@contextmanager
def _stop_signals():
    """^C, SIGTERM and SIGHUP end the listening (the report still comes) instead of unwinding; yields stopped()."""
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, _frame: got.append(signum))
           for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield lambda: bool(got)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextmanager
def _listening(shown: bool):
    """A live line on stderr (only on a terminal): packets heard, seconds left; yields progress(n, left)."""
    if not shown:
        yield None
        return
    from rich.status import Status

    with Status("listening", console=_console(stderr=True)) as status:
        yield lambda n, left: status.update(f"{n} NFLOG packet(s)" + (f", {left:.0f} s left" if left is not None
                                                                      else ", ^C stops"))


def _prefixes(policy: str | None, netns: str | None):
    """(LOG prefix -> Logged, policy line number -> text, a note) of the given or last applied policy."""
    from ..kernel.logs import stockade_prefixes
    from ..kernel.state import State
    from ..model.diagnostics import StockadeError
    from ..policy.compile import compile_policy
    from .inputs import load_policy

    if policy is not None:
        c = load_policy(policy)
    else:
        rec = State.for_netns(netns, create=False).read("applied")
        if rec is None or not rec.get("policy"):
            return {}, {}, "no policy applied here and none given (--policy): lines are named by rule id only"
        try:
            c = compile_policy(rec["policy"], rec.get("policy_text"))
        except (StockadeError, OSError) as e:
            return {}, {}, f"cannot recompile the applied policy ({e}): lines are named by rule id only"
    return stockade_prefixes(c.rulesets.values()), dict(enumerate(c.text.splitlines(), 1)), None


class _progress:
    """A rich progress bar on stderr for large files (only on a terminal); yields progress(done, total)."""

    def __init__(self, shown: bool):
        self.shown, self.bar = shown, None

    def __enter__(self):
        if not self.shown:
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("reading the log"), BarColumn(), DownloadColumn(), transient=True,
                            console=_console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("read", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _tables(report, out: dict, what: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..kernel.logs import timeline

    con = _console()
    con.print(f"{out['logged']} {what} of {out['read']} read, {out['first'] or '-'} to {out['last'] or '-'}"
              + (f"; {out['before_since']} before --since" if out["before_since"] else ""))
    t = Table(title="per policy line (stockade's prefixes)")
    for col in ("policy line", "rule", "count", "text"):
        t.add_column(col, justify="right" if col == "count" else "left")
    for r in out["lines"]:
        t.add_row(escape(r["line"]), escape(r["note"]), str(r["count"]), escape(r["text"] or ""))
    con.print(t)
    if out["foreign"]:
        t = Table(title="other prefixes (other tools' rules)")
        t.add_column("prefix")
        t.add_column("count", justify="right")
        for r in out["foreign"]:
            t.add_row(escape(r["prefix"]), str(r["count"]))
        con.print(t)
    for title, rows, cols in (("top sources", out["sources"], ("source", "count")),
                              ("top ports", out["ports"], ("port", "service", "count"))):
        t = Table(title=title)
        for col in cols:
            t.add_column(col, justify="right" if col == "count" else "left")
        for r in rows:
            t.add_row(*(escape(str(r[c] or "")) for c in cols))
        con.print(t)
    t = Table(title="timeline")
    t.add_column("from")
    t.add_column("count", justify="right")
    t.add_column("")
    buckets = timeline(report)
    peak = max((n for _, n in buckets), default=0)
    for start, n in buckets:
        t.add_row(start, str(n), "█" * (round(30 * n / peak) if peak else 0))
    con.print(t)
