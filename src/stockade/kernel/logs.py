"""The kernel's LOG lines, read back and mapped to the policy lines that logged them (`stockade logs`).

A compiled policy logs each dropping policy line in a chain of its own whose LOG prefix ends in the
line's rule id (policy/compile.py `rule_id`: `L39`, `Dclosed`), so a log line's prefix names the line;
which prefixes are stockade's comes from the policy itself (the applied one, or one given), each mapped
to its Origin.tag and note. Prefixes of other tools are grouped as they are.

Sources: the journal (`journalctl -k`), a file in the kern.log/syslog form (RFC 3339 or `Mon DD
HH:MM:SS` stamps), `dmesg` output, or /dev/kmsg records (`PRI,SEQ,USEC,FLAGS;text`). Only lines with
the LOG target's `IN=... OUT=... SRC=...` fields count; everything else is skipped and counted. A policy
logging with NFLOG (`[log] target = "nflog"`) is read by a listener on its group (kernel/nflog.py), whose
packets come with the same prefix and fields (`read_packets`).
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..model import Ruleset, comment_tag
from .host import KernelError
from .nflog import Packet

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+\S+\s+kernel:\s?(.*)$")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2}\s+\d{1,2}\s\d\d:\d\d:\d\d)\s+\S+\s+kernel:\s?(.*)$")
_KMSG = re.compile(r"^\d+,\d+,(\d+),[^;]*;(.*)$")
_DMESG = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")  # the kernel's own stamp after a syslog header
_FIELD = re.compile(r"([A-Z]+)=(\S*)")
_RULE_ID = re.compile(r"(L[1-9][0-9]*|D[a-z]{1,8}) $")
_SINCE = re.compile(r"^(\d+)([smhd])$")
BUCKETS = 60  # at most this many timeline buckets
TOP = 10


@dataclass(frozen=True)
class Logged:
    """What one stockade LOG or NFLOG rule stands for: its policy line (Origin.tag), the rule's note, and
    the NFLOG group it logs to (None: LOG)."""

    tag: str | None
    note: str | None
    chain: str
    group: int | None = None


def stockade_prefixes(rulesets: Iterable[Ruleset]) -> dict[str, Logged]:
    """Every LOG and NFLOG prefix of a compiled policy -> the policy line and rule that log with it."""
    out = {}
    for rs in rulesets:
        for table in rs.tables.values():
            for chain in table.chains.values():
                for rule in chain.rules:
                    t = rule.target
                    if t is None or t.name not in ("LOG", "NFLOG") or t.data.prefix is None:
                        continue
                    comment = next((m.data for m in rule.matches if m.name == "comment"), None)
                    tag = comment_tag(comment)
                    note = comment[len(tag):].strip() if tag else comment
                    out[t.data.prefix] = Logged(tag, note, chain.name, t.data.group if t.name == "NFLOG" else None)
    return out


@dataclass
class Report:
    """Counts only (a log may run to millions of lines): per policy line, per foreign prefix, per source,
    per destination port, per minute."""

    lines: Counter = field(default_factory=Counter)  # (tag or rule id, note) -> count
    foreign: Counter = field(default_factory=Counter)  # prefix -> count
    sources: Counter = field(default_factory=Counter)
    ports: Counter = field(default_factory=Counter)  # "tcp/22" -> count
    minutes: Counter = field(default_factory=Counter)  # (minute, group) -> count; group: policy line or prefix
    port_minutes: Counter = field(default_factory=Counter)  # (minute, "tcp/22") -> count
    read: int = 0  # lines read
    logged: int = 0  # LOG lines among them
    skipped: int = 0  # LOG lines before --since
    first: float | None = None
    last: float | None = None

    def add(self, when: float, prefix: str, fields: dict[str, str], known: dict[str, Logged]) -> None:
        self.logged += 1
        hit = known.get(prefix)
        if hit is not None:
            group = hit.tag or hit.chain
            self.lines[(group, hit.note or "")] += 1
        elif not known and (m := _RULE_ID.search(prefix)):  # no policy to ask: the rule id alone
            group = m.group(1)
            self.lines[(group, "")] += 1
        else:
            group = f"[{prefix.strip() or 'no prefix'}]"
            self.foreign[prefix.strip() or "(no prefix)"] += 1
        self.sources[_address(fields.get("SRC", "?"))] += 1
        proto = fields.get("PROTO", "?").lower()
        port = f"{proto}/{fields['DPT']}" if "DPT" in fields else proto
        self.ports[port] += 1
        minute = int(when // 60 * 60)
        self.minutes[(minute, group)] += 1
        self.port_minutes[(minute, port)] += 1
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)

    def to_json(self, texts: dict[int, str] | None = None) -> dict:
        texts = texts or {}
        return {
            "read": self.read, "logged": self.logged, "before_since": self.skipped,
            "first": _iso(self.first), "last": _iso(self.last),
            "lines": [{"line": g, "note": n, "count": c,
                       "text": texts.get(_line_no(g)) or (f"default of `{g.rpartition(':')[2]}` (not in the file)"
                                                          if ":" in g else None)}
                      for (g, n), c in self.lines.most_common()],
            "foreign": [{"prefix": p, "count": c} for p, c in self.foreign.most_common()],
            "sources": [{"source": s, "count": c} for s, c in self.sources.most_common(TOP)],
            "ports": [{"port": p, "service": service(p), "count": c} for p, c in self.ports.most_common(TOP)],
            "timeline": [{"start": _iso(m), "group": g, "count": c} for (m, g), c in sorted(self.minutes.items())],
        }


@functools.lru_cache(maxsize=65536)
def _address(text: str) -> str:
    """An address as written elsewhere (the kernel prints IPv6 ones in full: 2001:0db8:0000:...)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _line_no(tag: str) -> int | None:
    where = tag.rpartition(":")[2]
    return int(where) if where.isdigit() else None


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def service(port: str) -> str | None:
    """The service name of `tcp/22` from the system's services database, None if it has none."""
    proto, _, number = port.partition("/")
    try:
        return socket.getservbyport(int(number), proto) if number.isdigit() and proto in ("tcp", "udp") else None
    except OSError:
        return None


def since_time(text: str | None, now: float | None = None) -> float | None:
    """`--since`: `90s`, `30m`, `1h`, `2d` before now, or an ISO date; ValueError if neither."""
    if text is None:
        return None
    m = _SINCE.match(text.strip())
    if m:
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return (now if now is not None else time.time()) - seconds
    stamp = datetime.fromisoformat(text.strip())
    return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


@functools.lru_cache(maxsize=4096)
def _syslog_time(stamp: str, year: int) -> float:
    """A `Mon DD HH:MM:SS` stamp (local time, the year given); cached: a log repeats each second many times."""
    return datetime.strptime(f"{year} {' '.join(stamp.split())}", "%Y %b %d %H:%M:%S").astimezone().timestamp()


def parse_line(line: str, year: int, boot: float) -> tuple[float, str] | None:
    """(time, the kernel's message) of one log line in any of the forms read, None if it is none."""
    if m := _ISO.match(line):
        stamp = datetime.fromisoformat(m.group(1).replace(",", ".").replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp(), _STAMP.sub("", m.group(2))
    if m := _SYSLOG.match(line):
        return _syslog_time(m.group(1), year), _STAMP.sub("", m.group(2))
    if m := _KMSG.match(line):
        return boot + int(m.group(1)) / 1e6, m.group(2)
    if m := _DMESG.match(line):
        return boot + float(m.group(1)), m.group(2)
    return None


def log_fields(message: str) -> tuple[str, dict[str, str]] | None:
    """(prefix, fields) of a LOG target's message, None if the message is not one."""
    at = message.find("IN=")
    if at < 0 or " OUT=" not in message or " SRC=" not in message:
        return None
    return message[:at], dict(_FIELD.findall(message[at:]))


def read_log(lines: Iterable[str], known: dict[str, Logged], since: float | None = None,
             year: int | None = None) -> Report:
    """The report of a stream of log lines."""
    report = Report()
    year = year or datetime.now().year
    boot = _boot_time()
    for line in lines:
        report.read += 1
        parsed = parse_line(line.rstrip("\n"), year, boot)
        if parsed is None:
            continue
        found = log_fields(parsed[1])
        if found is None:
            continue
        if since is not None and parsed[0] < since:
            report.skipped += 1
            continue
        report.add(parsed[0], *found, known)
    return report


def read_packets(packets: Iterable[Packet], known: dict[str, Logged]) -> Report:
    """The report of NFLOG packets (kernel/nflog.py): each is one LOG line, already parsed."""
    report = Report()
    for p in packets:
        report.read += 1
        report.add(p.when if p.when is not None else time.time(), p.prefix, p.fields, known)
    return report


LINE_MAX = 1 << 16  # bytes: a kernel log line is under 1 KiB; longer runs are read in pieces, never whole


def file_lines(path: Path, progress: Callable[[int, int], None] | None = None) -> Iterator[str]:
    """The lines of a saved log (a regular file: a device or FIFO may never end), bad bytes replaced;
    `progress(done, total)` in bytes as it goes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the open
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KernelError(f"{path} is not a regular file", hint="save the log to a file first")
            total, done, n = st.st_size, 0, 0
            while raw := f.readline(LINE_MAX):
                n += 1
                done += len(raw)
                if progress is not None and n % 20000 == 0:
                    progress(done, total)
                yield raw.decode("utf-8", "replace")
            if progress is not None:
                progress(done, total)
    except OSError as e:
        raise KernelError(f"cannot read {path}: {e.strerror or e}",
                          hint="give a kernel log file (kern.log, dmesg output) or --source journal") from None


def journal_lines(since: float | None) -> Iterator[str]:
    """`journalctl -k` in RFC 3339 form (the kernel ring of this machine: one for all namespaces)."""
    argv = ["journalctl", "-k", "--no-pager", "-o", "short-iso-precise"]
    if since is not None:
        argv += ["--since", datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M:%S")]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as e:
        raise KernelError(f"cannot run journalctl: {e.strerror or e}",
                          hint="read a file instead: --source /var/log/kern.log") from None
    assert proc.stdout is not None
    yield from proc.stdout
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        raise KernelError(f"journalctl -k failed: {err.strip() or f'exit {proc.returncode}'}",
                          hint="read a file instead: --source /var/log/kern.log")


def bucket_size(report: Report) -> int:
    """Seconds per timeline bucket: whole minutes, so that the log's span fits in BUCKETS buckets."""
    if report.first is None:
        return 60
    minutes = int(report.last // 60 - report.first // 60) + 1
    return 60 * max(1, -(-minutes // BUCKETS))


def timeline(report: Report, by: str = "total") -> list[tuple[str, int]] | dict[str, list[tuple[str, int]]]:
    """Counts per bucket, from the first line's bucket to the last's, empty buckets included: in total, or
    per policy line / foreign prefix (`by="group"`) or per port (`by="port"`)."""
    if report.first is None:
        return [] if by == "total" else {}
    size = bucket_size(report)
    start = int(report.first // size * size)
    starts = list(range(start, int(report.last) + 1, size))
    source = report.port_minutes if by == "port" else report.minutes
    series: dict[str, Counter] = {}
    for (minute, key), n in source.items():
        series.setdefault("total" if by == "total" else key, Counter())[(minute - start) // size] += n
    out = {k: [(_iso(start + i * size), c[i]) for i in range(len(starts))] for k, c in series.items()}
    return out.get("total", []) if by == "total" else out
