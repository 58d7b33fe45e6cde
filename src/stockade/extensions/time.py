"""-m time: when a packet is seen, by the wall clock (libxt_time / xt_time).

xt_time reads the kernel's clock as the rule runs (UTC seconds; with --kerneltz shifted by the
kernel's time zone, sys_tz) and holds when all of these do: the time lies in [datestart,
datestop]; its time of day in [timestart, timestop], or, when timestart > timestop, outside the
gap between them; its weekday and its day of the month are in the given sets. With
--contiguous, the part of a range across midnight that falls after midnight counts as the
day the range started on.

The simulator cannot answer: a packet spec's "t" counts seconds from the ruleset's load (as
-m limit and -m recent read it), not the wall clock, so the match is unknown for every packet.
"""
from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, element_list
from .base import Extension, Option, register

INT_MAX = 2**31 - 1  # libxt_time's "no end" date, which iptables-save prints: 2038-01-19T03:14:07
DAY = 86400
ALL_MONTHDAYS = 0xFFFFFFFE  # bits 1-31
ALL_WEEKDAYS = 0xFE  # bits 1 (Monday) to 7 (Sunday)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DATE_HINT = "write YYYY[-MM[-DD[Thh[:mm[:ss]]]]], years 1970 to 2038"
NUMBER = re.compile(r"\d*")


@dataclass(frozen=True)
class Time:
    """What xt_time_info holds: dates as UTC seconds, times of day as seconds since midnight,
    days as bit sets (bit N: day N of the month, weekday N from Monday = 1)."""

    date_start: int = 0
    date_stop: int = INT_MAX
    daytime_start: int = 0
    daytime_stop: int = DAY - 1
    monthdays: int = ALL_MONTHDAYS
    weekdays: int = ALL_WEEKDAYS
    kerneltz: bool = False
    contiguous: bool = False


def _fields(word: str, seps: str, limits: tuple[int, ...]) -> list[int]:
    """Numbers separated by `seps` (one separator per gap) as libxt_time reads them with strtoul: an
    empty field is 0; a field above its limit, a wrong separator or trailing text is an error."""
    out, rest = [], word
    for i, limit in enumerate(limits):
        digits = NUMBER.match(rest)[0]
        value, rest = int(digits or 0), rest[len(digits):]
        if value > limit:
            raise ValueError
        out.append(value)
        if not rest:
            return out
        if i == len(limits) - 1 or rest[0] != seps[i]:
            raise ValueError
        rest = rest[1:]
    return out


def parse_date(word: str) -> int:
    """time_parse_date: UTC seconds; mktime normalises a month or day 0 (to the month or day before)
    and days beyond the month's end (into the next)."""
    try:
        fields = _fields(word, "--T::", (9999, 12, 31, 23, 59, 59))
    except ValueError:
        fields = []
    if not fields or not 1970 <= fields[0] <= 2038:
        raise ParseError(f"time: bad date `{word}`", code="bad-value", hint=DATE_HINT)
    year, month, day, hour, minute, second = fields + [1, 1, 0, 0, 0][len(fields) - 1:]
    if month == 0:
        year, month = year - 1, 12
    return calendar.timegm((year, month, 1, hour, minute, second)) + (day - 1) * DAY


def parse_daytime(word: str) -> int:
    """time_parse_minutes: hh:mm[:ss] as seconds since midnight."""
    try:
        hour, minute, *second = _fields(word, "::", (23, 59, 59))
    except ValueError:
        raise ParseError(f"time: bad time of day `{word}`", code="bad-value",
                         hint="write hh:mm[:ss], from 00:00:00 to 23:59:59") from None
    return hour * 3600 + minute * 60 + (second[0] if second else 0)


def _c_number(text: str) -> int | None:
    """strtoul(text, base 0) when it reads the whole text (decimal, 0octal, 0xhex); else None."""
    for pattern, base in ((r"0[xX][0-9a-fA-F]+", 16), (r"0[0-7]*", 8), (r"[1-9]\d*", 10)):
        if re.fullmatch(pattern, text):
            return int(text, base)
    return None


def parse_monthdays(word: str) -> int:
    """time_parse_monthdays: each comma-separated item is cut to two characters (as libxt_time's
    buffer does) and read as a number 1-31. Day 0 is refused: the kernel would never see it,
    and iptables-save could not print it."""
    mask = 0
    for item in word.split(","):
        day = _c_number(item[:2])
        if day is None or not 1 <= day <= 31:
            raise ParseError(f"time: `{item}` is not a day of the month", code="bad-value",
                             hint="a comma-separated list of days 1 to 31, e.g. 1,15")
        mask |= 1 << day
    return mask


def parse_weekdays(word: str) -> int:
    """time_parse_weekdays: each item, cut to three characters, is a number 1-7 (Monday = 1) or
    starts with the first two letters of a day's name (case matters: Mo, Tu, We, Th, Fr, Sa, Su)."""
    mask = 0
    for item in word.split(","):
        text = item[:3]
        number = _c_number(text) if text else 0
        if number is not None:
            if not 1 <= number <= 7:
                raise ParseError(f"time: `{item}` is not a weekday", code="bad-value",
                                 hint="days are 1 (Monday) to 7 (Sunday), or Mon, Tue, Wed, Thu, Fri, Sat, Sun")
            mask |= 1 << number
            continue
        hits = [i for i, name in enumerate(WEEKDAYS, 1) if len(text) >= 2 and text[:2] == name[:2]]
        if not hits:
            raise ParseError(f"time: `{item}` is not a weekday", code="bad-value",
                             hint="days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (or 1 to 7), comma-separated")
        mask |= 1 << hits[0]
    return mask


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _date(stamp: int, sep: str) -> str:
    return time.strftime(f"%Y-%m-%d{sep}%H:%M:%S", time.gmtime(stamp))


@register
class TimeMatch(Extension):
    name = "time"
    undecidable = "the wall-clock time is no part of a packet"
    options = (
        Option("--datestart", type=parse_date), Option("--datestop", type=parse_date),
        Option("--timestart", type=parse_daytime), Option("--timestop", type=parse_daytime),
        Option("--monthdays", invertible=True, type=parse_monthdays),
        Option("--weekdays", invertible=True, type=parse_weekdays),
        Option("--contiguous", nargs=0), Option("--kerneltz", nargs=0), Option("--localtz", nargs=0),
        Option("--utc", nargs=0),
    )
    roundtrip = (
        "-m time --timestart 08:00 --timestop 17:30:15 --weekdays Mon,Tu,3,Thu,Fri -j ACCEPT",
        "-m time --datestart 2024-02-29 --datestop 2037-12-31T23:59:59 -j DROP",
        "-m time ! --monthdays 1,15,31 --kerneltz -j ACCEPT",
        "-m time --timestart 22:00 --timestop 06:00 --contiguous ! --weekdays Sat,Sun --utc -j DROP",
        "-m time --datestart 2021 --timestart 12:00 -j ACCEPT",
    )

    def finish(self, acc, ctx):
        if "utc" in acc and ("kerneltz" in acc or "localtz" in acc):
            raise ParseError("time: --utc and --kerneltz contradict each other", code="conflicting-options")

        def days(key: str, every: int) -> int:
            invert, mask = acc.get(key, (False, every))
            mask ^= every if invert else 0
            if not mask:
                raise ParseError(f"time: --{key} leaves no day to match on", code="bad-value",
                                 hint="iptables-save would print an empty list it cannot read back")
            return mask

        t = Time(acc.get("datestart", (False, 0))[1], acc.get("datestop", (False, INT_MAX))[1],
                 acc.get("timestart", (False, 0))[1], acc.get("timestop", (False, DAY - 1))[1],
                 days("monthdays", ALL_MONTHDAYS), days("weekdays", ALL_WEEKDAYS),
                 "kerneltz" in acc or "localtz" in acc, "contiguous" in acc)
        if t.contiguous and t.daytime_start < t.daytime_stop:
            raise ParseError("time: --contiguous only makes sense when --timestop is before --timestart",
                             code="conflicting-options")
        if t.date_stop == 0:
            raise ParseError("time: --datestop 1970-01-01T00:00:00 would be saved as no end date",
                             code="bad-value", hint="iptables-save leaves a date of 0 out")
        return t

    def save(self, t: Time) -> list[str]:
        """time_save's order; a date of 0 is left out, and so the default end date is printed."""
        out = []
        if (t.daytime_start, t.daytime_stop) != (0, DAY - 1):
            out += ["--timestart", _clock(t.daytime_start), "--timestop", _clock(t.daytime_stop)]
        if t.monthdays != ALL_MONTHDAYS:
            out += ["--monthdays", ",".join(str(i) for i in range(1, 32) if t.monthdays >> i & 1)]
        if t.weekdays != ALL_WEEKDAYS:
            out += ["--weekdays", ",".join(WEEKDAYS[i - 1] for i in range(1, 8) if t.weekdays >> i & 1)]
        for flag, stamp in (("--datestart", t.date_start), ("--datestop", t.date_stop)):
            out += [flag, _date(stamp, "T")] if stamp else []
        return out + (["--kerneltz"] if t.kerneltz else []) + (["--contiguous"] if t.contiguous else [])

    def holds(self, t: Time, pkt, env) -> bool | None:
        """Unknown: the packet spec has no wall-clock time (see the module docstring)."""
        return None

    def nft(self, t: Time, ctx) -> list[Part]:
        """iptables-translate's `meta time`, `meta hour`, `meta day`. nft has no day of the month,
        cannot count a range across midnight as the day before, and reads its own `meta hour` in
        UTC, not the kernel's time zone. Assumption: nft reads the hours and dates it is given in
        the time zone of the process that loads the ruleset, so these mean what xt_time's UTC
        means when that process runs with TZ=UTC (as iptables-translate assumes too)."""
        if t.monthdays != ALL_MONTHDAYS or t.contiguous or t.kerneltz:
            raise ctx.fail("time: --monthdays, --contiguous and --kerneltz have no nftables equivalent")
        parts = []
        if (t.date_start, t.date_stop) != (0, INT_MAX):
            parts.append(Part(f'meta time "{_date(t.date_start, " ")}"-"{_date(t.date_stop, " ")}"'))
        if t.daytime_start <= t.daytime_stop:
            if (t.daytime_start, t.daytime_stop) != (0, DAY - 1):
                parts.append(Part(f'meta hour "{_clock(t.daytime_start)}"-"{_clock(t.daytime_stop)}"'))
        elif t.daytime_stop + 1 < t.daytime_start:  # across midnight: outside the gap between
            parts.append(Part(f'meta hour != "{_clock(t.daytime_stop + 1)}"-"{_clock(t.daytime_start - 1)}"'))
        if t.weekdays != ALL_WEEKDAYS:
            parts.append(Part(f"meta day {element_list([str(i % 7) for i in range(1, 8) if t.weekdays >> i & 1])}"))
        return parts
