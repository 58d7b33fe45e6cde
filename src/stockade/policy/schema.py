"""The policy file: what the server should allow, validated before anything is compiled.

Every error comes out as `file:line:col: error: message` with a hint: unknown keys
(with the key meant), service names (with the service meant), addresses, rates.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..files import read_regular
from ..model import Origin
from ..model.diagnostics import DiagnosedError, Diagnostic, Unreadable
from ..parse.read import decode
from .catalogue import resolve
from .locate import key_positions, nesting_beyond, position

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(text: str) -> Network:
    """An address or CIDR; host bits are an error, as they usually mean a typo."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise ValueError(f"`{text}` is not an address or network ({e})") from None
RATE = re.compile(r"^(\d+)/(\d*)(second|sec|s|minute|min|m|hour|h|day|d)$")
UNIT_SECONDS = {"second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600,
                "day": 86400, "d": 86400}
NAME = re.compile(r"[a-z][a-z0-9_-]{0,18}")  # stk-NAME-net4-a: at most 31, ipset's limit
# Group names stockade gives a meaning of its own: `everyone` in allow rules, `bogons` for its built-in set.
RESERVED = ("everyone", "bogons")
EVERY_ADDRESS = "a member with prefix /0 matches all traffic; remove it (allow rules can say `everyone`)"


def parse_rate(text: str) -> tuple[int, int]:
    """`N/UNIT` or `N/KUNIT` (e.g. `10/10m`: 10 per 10 minutes) into (count, seconds)."""
    m = RATE.match(text.strip())
    if not m:
        raise ValueError(f"`{text}` is not a rate; write e.g. 5/second, 10/10m, 100/hour")
    count, mult, unit = int(m.group(1)), int(m.group(2) or 1), m.group(3)
    if count == 0 or mult == 0:
        raise ValueError(f"`{text}`: a rate needs a count and a period above zero")
    return count, mult * UNIT_SECONDS[unit]


def _rate_ok(text: str) -> str:
    parse_rate(text)
    return text


def _services_ok(value: str | list[str]) -> str | list[str]:
    for name in [value] if isinstance(value, str) else value:
        resolve(name)
    return value


Rate = Annotated[str, AfterValidator(_rate_ok)]
Services = Annotated[str | list[str], AfterValidator(_services_ok)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Server(Strict):
    interfaces: list[str] = Field(default_factory=lambda: ["eth0"], min_length=1)
    addresses: list[str] = Field(default_factory=list)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            network(a)
        return v

    @field_validator("interfaces")
    @classmethod
    def _ifaces(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,15}\+?", name):
                raise ValueError(f"`{name}` is not an interface name (letters, digits, _ . -, at most 15)")
        return v


class FileGroup(Strict):
    file: str


def _group(value: Any) -> tuple[str, ...] | FileGroup:
    """A group is a list of addresses/CIDRs or `{ file = "PATH" }` (one address per line, # comments)."""
    if isinstance(value, dict):
        return FileGroup.model_validate(value)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError('a group is a list of addresses, e.g. ["192.0.2.7", "2001:db8::/48"], '
                         'or { file = "blocked.txt" }')
    for x in value:
        if network(x).prefixlen == 0:
            raise ValueError(f"`{x}` is every address; {EVERY_ADDRESS}")
    return tuple(value)


def _group_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"group name {name[:40]!r}: lower-case letters, digits, _ and -, at most 19 "
                         "(with its set suffixes, ipset allows 31)")
    if name in RESERVED:
        raise ValueError(f"group name `{name}` is reserved (stockade uses it for its own set)")
    return name


Group = Annotated[Any, BeforeValidator(_group)]
GroupName = Annotated[str, AfterValidator(_group_name)]


class LogSettings(Strict):
    drops: bool = True
    prefix: str = "stockade-drop: "
    rate: Rate = "5/minute"
    burst: int = Field(default=10, ge=1, le=10000)
    target: Literal["log", "nflog"] = "log"  # the kernel log (LOG), or an nfnetlink_log group (NFLOG)
    group: int = Field(default=0, ge=0, le=65535, strict=True)  # NFLOG's group; 0 is NFLOG's own default

    @model_validator(mode="after")
    def _group_needs_nflog(self) -> LogSettings:
        if "group" in self.model_fields_set and self.target != "nflog":
            raise ValueError('`group` is the NFLOG group: it needs target = "nflog"')
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:=\- ]{1,28}", v):
            raise ValueError("a log prefix is 1-28 characters: letters, digits, space and _ . : = -")
        return v


class Icmp(Strict):
    ping: Literal["allow", "limit", "deny"] = "limit"
    ping_out: Literal["allow", "deny"] = "allow"  # this host's own pings, in strict egress (open lets all out)
    rate: Rate = "5/second"
    burst: int = Field(default=10, ge=1, le=10000)


class SynFlood(Strict):
    rate: Rate = "50/second"
    burst: int = Field(default=100, ge=1, le=10000)


class Protect(Strict):
    invalid: bool = True
    null: bool = True
    xmas: bool = True
    new_without_syn: bool = True
    bogons: bool = True
    syn_flood: SynFlood | Literal[False] = Field(default_factory=SynFlood)


class Blocklist(Strict):
    inbound: list[str] = Field(default_factory=list)
    outbound: list[str] = Field(default_factory=list)


BAN_TIMEOUT_MAX = 4294967  # seconds: ipset's largest timeout (UINT_MAX milliseconds)


class Bans(Strict):
    """A ban set other tools (fail2ban's action `stockade ban`) fill at run time: one set element per
    banned address, each expiring after its timeout; its contents are carried across applies and
    rollbacks. Checked first in INPUT, so a ban also cuts connections already open."""

    timeout: int = Field(default=3600, ge=1, le=BAN_TIMEOUT_MAX)  # seconds, when the banner gives none
    max: int = Field(default=65536, ge=1024, le=1 << 24)  # addresses per family


class Defaults(Strict):
    closed: Literal["drop", "reject"] = "drop"
    egress: Literal["open", "strict"] = "open"


class Allow(Strict):
    service: Services
    from_: str | list[str] = Field(default="everyone", alias="from")
    limit: Rate | None = None  # new connections per source, e.g. "10/10m"

    @property
    def services(self) -> list[str]:
        return [self.service] if isinstance(self.service, str) else list(self.service)

    @property
    def sources(self) -> list[str]:
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)


class Egress(Strict):
    service: Services
    to: str | list[str] = "everyone"

    @property
    def services(self) -> list[str]:
        return [self.service] if isinstance(self.service, str) else list(self.service)

    @property
    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


def parse_duration(text: str) -> int:
    """`30s`, `15m`, `6h`, `1d` into seconds."""
    m = DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"`{text}` is not a duration; write e.g. 15m, 6h, 1d")
    return int(m.group(1)) * UNIT_SECONDS[m.group(2)]


def _duration_ok(text: str) -> str:
    parse_duration(text)
    return text


class Feed(Strict):
    """A group whose members come from a list fetched (`url`) or read (`file`) by `stockade feeds update`.
    `format`: plain (an address or network per line, `#` comments), ip-comment (`ADDR;comment`),
    spamhaus (DROP/EDROP: `NET ; SBLnnn`, `;` comments), netset (FireHOL: as plain). A fetch that fails
    or a list that is unusable keeps the last good list."""
    url: str | None = None
    file: str | None = None
    format: Literal["plain", "ip-comment", "spamhaus", "netset"] = "plain"
    refresh: Annotated[str, AfterValidator(_duration_ok)] = "1h"
    max_entries: int = Field(default=1_000_000, ge=1, le=8_000_000)
    timeout: int = Field(default=30, ge=1, le=600)  # seconds for one fetch
    max_bytes: int = Field(default=64 << 20, ge=1024, le=1 << 30)
    on_failure: Literal["keep"] = "keep"

    @model_validator(mode="after")
    def _source(self) -> Feed:
        if (self.url is None) == (self.file is None):
            raise ValueError("a feed has either `url` or `file`")
        if self.url is not None and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", self.url):
            raise ValueError(f"`{self.url[:60]}` is not an http:// or https:// URL")
        return self


class Policy(Strict):
    server: Server = Field(default_factory=Server)
    groups: dict[GroupName, Group] = Field(default_factory=dict)
    feeds: dict[GroupName, Feed] = Field(default_factory=dict)
    admin: list[str] = Field(default_factory=list)  # groups with full access
    defaults: Defaults = Field(default_factory=Defaults)
    log: LogSettings = Field(default_factory=LogSettings)
    icmp: Icmp = Field(default_factory=Icmp)
    protect: Protect = Field(default_factory=Protect)
    blocklist: Blocklist = Field(default_factory=Blocklist)
    bans: Bans | None = None
    allow: list[Allow] = Field(default_factory=list)
    egress: list[Egress] = Field(default_factory=list)

    @model_validator(mode="after")
    def _feed_names(self) -> Policy:
        both = sorted(set(self.groups) & set(self.feeds))
        if both:
            raise ValueError(f"`{both[0]}` is both a group and a feed; a feed is a group of its own, name it once")
        return self


class PolicyError(DiagnosedError):
    """The policy cannot be used; `diagnostics` say where and why."""


def _hint(loc: tuple, known: dict) -> str | None:
    """For an unknown key: the allowed key it is closest to, or the allowed keys."""
    level = known
    for part in loc[:-1]:
        if not isinstance(part, int):
            level = level.get(part, {})
    close = difflib.get_close_matches(str(loc[-1]), sorted(level), n=1)
    return f"did you mean `{close[0]}`?" if close else (f"allowed here: {', '.join(sorted(level))}" if level else None)


def _fields(model: type[BaseModel]) -> dict:
    """The keys allowed at each level of the policy, nested."""
    out: dict = {}
    for name, f in model.model_fields.items():
        args = getattr(f.annotation, "__args__", None) or (f.annotation,)
        sub = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        out[f.alias or name] = _fields(sub) if sub else {}
    return out


def _names(tree: dict) -> set[str]:
    return set(tree) | {n for sub in tree.values() for n in _names(sub)}


POLICY_MAX = 16 << 20  # bytes; a policy is a page or two, its long lists live in group files
MAX_NESTING = 32  # TOML brackets deep; a policy needs 3, tomllib recurses once per level


def read_policy(path: Path) -> str:
    """The text of a policy file (a regular file, UTF-8); PolicyError saying where it is unreadable."""
    try:
        return decode(read_regular(path, POLICY_MAX), str(path))
    except OSError as e:
        raise PolicyError([Diagnostic("error", "unreadable", f"cannot read policy: {e.strerror or e}",
                                      Origin(str(path), 1))]) from None
    except Unreadable as e:
        raise PolicyError([e.diagnostic]) from None


def load_policy(path: str | Path, text: str | None = None) -> Policy:
    """Read and validate a policy file; raise PolicyError with positioned diagnostics."""
    path = Path(path)
    name = str(path)
    if text is None:
        text = read_policy(path)
    if deep := nesting_beyond(text, MAX_NESTING):
        raise PolicyError([Diagnostic("error", "toml", f"values nested more than {MAX_NESTING} deep",
                                      Origin(name, *deep), "a policy nests lists and tables a few levels at most")])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        raise PolicyError([Diagnostic("error", "toml", f"not valid TOML: {str(e).split(' (at line')[0]}",
                                      Origin(name, line, col), "see https://toml.io for the syntax")]) from None
    except RecursionError:  # nesting the bracket count above missed (e.g. inside multi-line strings)
        raise PolicyError([Diagnostic("error", "toml", "values nested too deep", Origin(name, 1),
                                      "a policy nests lists and tables a few levels at most")]) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        positions = key_positions(text)
        known = _fields(Policy)
        positions_keys = {p for path in positions for p in path if isinstance(p, str)} | _names(known)
        diags = []
        for err in e.errors():
            # union branches add their type names (`str`, `list[str]`) to the location: keep keys and indices
            loc = tuple(p for p in err["loc"] if isinstance(p, int) or p in positions_keys)
            msg = err["msg"].removeprefix("Value error, ")
            unknown = err["type"] == "extra_forbidden"
            if unknown:
                msg = f"unknown key `{loc[-1]}`"
            line, col = position(positions, loc)
            where = ".".join(str(p) for p in loc)
            diags.append(Diagnostic("error", "policy", f"{where}: {msg}", Origin(name, line, col),
                                    _hint(loc, known) if unknown else None))
        raise PolicyError(_dedupe(diags)) from None


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in diags:
        key = (d.origin, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
