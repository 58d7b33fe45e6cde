"""`stockade feeds update`: fetch each feed, check every entry, and change the live set by the difference.

Per feed, under the namespace's state dir (state.py), `feeds/NAME.list` (its last good list: the
members its sets hold, one per line) and `feeds/NAME.json` (etag, last-modified, when it was last
fetched and changed, entries, bad lines, the last error). `apply` compiles each feed's group from its
last good list, so an apply keeps what the feeds hold.

A fetch (http/https with the standard library: a timeout, a size cap, If-None-Match and
If-Modified-Since) or a read (`file`) that fails, a list larger than `max_entries`, or one without
a single good entry changes nothing: the last good list stays live and the error is recorded. A
good list is diffed against what the live sets hold (the last good list, while the kernel's count
of members agrees with it; else the kernel's own listing) and only the difference is applied, in
one step (sets.py): the set is never reloaded, so never empty on the way.
"""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..files import read_regular, write_atomic
from ..heap import collector_paused
from ..model import Family
from ..parse.read import Unreadable
from ..policy.compile import Members
from ..policy.feeds import read_feed
from ..policy.schema import Feed, load_policy
from . import sets
from .host import Host, KernelError
from .lock import locked
from .part import OwnedPart, nft_canonical
from .sets import nft_name
from .state import State, now

KINDS = ((Family.IPV4, "ip"), (Family.IPV4, "net"), (Family.IPV6, "ip"), (Family.IPV6, "net"))


class FetchError(Exception):
    """The feed could not be fetched or read; the last good list stays."""


@dataclass
class Fetched:
    data: bytes | None  # None: not modified since the last fetch
    etag: str | None = None
    modified: str | None = None


def _dir(state: State) -> Path:
    d = state.dir / "feeds"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def read_list(state: State, name: str) -> Members | None:
    """A feed's last good list, by set (None: never fetched). The file holds one section per set, each
    headed `# stk-NAME-KIND`, so a million entries are read without looking at each."""
    try:
        text = (_dir(state) / f"{name}.list").read_text()
    except FileNotFoundError:
        return None
    sections = dict(zip(*[iter(re.split(r"^# stk-\S+-(ip4|net4|ip6|net6)$", text, flags=re.MULTILINE)[1:])] * 2,
                        strict=True))
    return {(f, k): sections.get(f"{k}{int(f)}", "").split() for f, k in KINDS}


def _list_text(members: Members) -> str:
    return "".join(f"# stk-feed-{k}{int(f)}\n" + "".join(m + "\n" for m in members.get((f, k), ())) for f, k in KINDS)


def stored_lists(netns: str | None) -> dict[str, Members]:
    """Every feed's last good list (for `apply` to compile: a feed's group holds it)."""
    state = State.for_netns(netns)
    d = state.dir / "feeds"
    return {p.stem: read_list(state, p.stem) for p in sorted(d.glob("*.list"))} if d.is_dir() else {}


def record(state: State, name: str) -> dict:
    return state.read(f"feeds/{name}") or {}


def fetch(feed: Feed, base: Path, rec: dict) -> Fetched:
    """The feed's bytes (at most max_bytes); FetchError saying why not."""
    if feed.file is not None:
        try:
            return Fetched(read_regular(base / feed.file, feed.max_bytes))
        except OSError as e:
            raise FetchError(f"cannot read {base / feed.file}: {e.strerror or e}") from None
    headers = {"User-Agent": "stockade-feeds"}
    if rec.get("etag"):
        headers["If-None-Match"] = rec["etag"]
    if rec.get("last_modified"):
        headers["If-Modified-Since"] = rec["last_modified"]
    try:
        with urllib.request.urlopen(urllib.request.Request(feed.url, headers=headers), timeout=feed.timeout) as r:
            data = r.read(feed.max_bytes + 1)
            etag, modified = r.headers.get("ETag"), r.headers.get("Last-Modified")
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return Fetched(None)
        raise FetchError(f"{feed.url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FetchError(f"{feed.url}: {getattr(e, 'reason', None) or e}") from None
    if len(data) > feed.max_bytes:
        raise FetchError(f"{feed.url}: larger than max_bytes ({feed.max_bytes})")
    return Fetched(data, etag, modified)


def _live_sets(part: OwnedPart, name: str) -> bool:
    """Does the applied part hold the feed's sets? (a feed added to the policy after its last apply does not)"""
    return f"stk-{name}-ip4" in part.text.get("sets" if part.backend != "nftables" else "nft", "")


def update_feed(host: Host, state: State, backend: str, name: str, feed: Feed, base: Path,
                force: bool = False) -> dict:
    """Fetch one feed and apply its difference; the report of what happened (its `error` when the last
    good list stays). The caller holds the lock."""
    rec = record(state, name)
    out = {"feed": name, "changed": False, "added": 0, "deleted": 0, "bad_lines": [], "error": None}
    rec["checked_at"] = now()
    try:
        got = fetch(feed, base, {} if force else rec)
        if got.data is None:
            out["not_modified"] = True
        else:
            try:
                fl = read_feed(got.data, feed.format, feed.url or str(base / feed.file))
            except Unreadable as e:
                raise FetchError(str(e.diagnostic)) from None
            out["bad_lines"] = [d.to_json() for d in fl.bad]
            if fl.count > feed.max_entries:
                raise FetchError(f"{fl.count} entries, more than max_entries ({feed.max_entries})")
            if fl.count == 0:
                raise FetchError("no good entry in the list" + (f" ({len(fl.bad)} bad lines)" if fl.bad else ""))
            t0, cpu = time.perf_counter(), time.process_time()
            try:
                changes = _apply_diff(host, backend, name, fl.members, read_list(state, name))
            except KernelError:  # the live sets are not what the last good list says (a change killed half
                changes = _apply_diff(host, backend, name, fl.members, None)  # done): diff against the kernel
            out["seconds"] = round(time.perf_counter() - t0, 3)
            out["cpu_seconds"] = round(time.process_time() - cpu, 3)  # stockade's own share (the machine may be busy)
            out["added"] = sum(len(c.add) for c in changes)
            out["deleted"] = sum(len(c.delete) for c in changes)
            out["changed"] = bool(out["added"] or out["deleted"])
            write_atomic(_dir(state) / f"{name}.list", _list_text(fl.members))
            rec.update(etag=got.etag, last_modified=got.modified, fetched_at=now(), fetched_clock=time.time(),
                       entries=fl.count, bad=len(fl.bad), last_error=None)
            if out["changed"]:
                rec["changed_at"] = now()
                _patch_applied(state, changes)
        if out.get("not_modified"):
            rec.update(fetched_at=now(), fetched_clock=time.time(), last_error=None)
    except (FetchError, KernelError) as e:
        out["error"] = str(e)
        rec["last_error"] = f"{now()} {e}"
    state.write(f"feeds/{name}", rec)
    out["entries"] = rec.get("entries", 0)
    return out


def _apply_diff(host: Host, backend: str, name: str, new: Members, old: Members | None) -> list[sets.SetChange]:
    """Change the feed's four live sets from `old` (None, or a set whose kernel count disagrees: read
    from the kernel) to `new`, in one step; the changes made."""
    changes = []
    live = sets.headers(host) if backend != "nftables" else {}
    for family, kind in KINDS:
        set_name = f"stk-{name}-{kind}{int(family)}"
        before, listed = (old or {}).get((family, kind)), False
        held = sets.entries(backend, set_name, live)
        if before is None or held is not None and held != len(set(before)):
            before, listed = sets.live_members(host, backend, set_name), True
        changes.append(sets.change(set_name, before, new.get((family, kind), []), backend, listed))
    sets.update(host, backend, changes, live)
    return changes


def _patch_applied(state: State, changes: list[sets.SetChange]) -> None:
    """The applied record's part holds the sets' members (its digest is the live version `status`
    compares): change it by the same difference, so a feed update is not reported as drift, and a
    change of the part by someone else still is (the record is not read back from the kernel, which
    would take that change in, and on nft cost two listings of a million members)."""
    rec = state.read("applied")
    if rec is None:
        return
    part = OwnedPart.from_json(rec["part"])
    if part.backend == "nftables":
        part.text["nft"] = nft_canonical(part.text["nft"], {nft_name(c.name): (c.delete, c.add) for c in changes})
    else:
        drop = {f"add {c.name} {m}" for c in changes for m in c.delete}
        lines = [ln for ln in part.text.get("sets", "").splitlines() if ln not in drop]
        lines += [f"add {c.name} {m}" for c in changes for m in c.add]
        part.text["sets"] = "\n".join(sorted(ln for ln in lines if ln.startswith("create "))
                                      + sorted(ln for ln in lines if ln.startswith("add "))) + "\n"
    state.write("applied", {**rec, "part": part.to_json(), "version": part.digest})


def update(policy_path: str, netns: str | None, root: str | None = None, only: tuple[str, ...] = (),
           force: bool = False) -> dict:
    """`stockade feeds update`: every feed of the policy (or the named ones) whose sets are live."""
    policy = load_policy(policy_path)
    unknown = [n for n in only if n not in policy.feeds]
    if unknown:
        raise KernelError(f"the policy has no feed `{unknown[0]}` (its feeds: {', '.join(policy.feeds) or 'none'})")
    host, state = Host(netns), State.for_netns(netns, root)
    base = Path(policy_path).resolve().parent
    with locked(state.dir / "lock"):
        applied = state.read("applied")
        if applied is None:
            raise KernelError("no policy was applied here yet: run `stockade apply` first (it creates the feeds' sets)")
        backend = applied["backend"]
        part = OwnedPart.from_json(applied["part"])
        reports = []
        with collector_paused():  # millions of members: the cyclic collector's walks cost more than the diff
            for name, feed in policy.feeds.items():
                if only and name not in only:
                    continue
                if not _live_sets(part, name):
                    reports.append({"feed": name, "changed": False, "error": f"feed `{name}` is not in the applied "
                                    "policy: run `stockade apply` with this policy first", "bad_lines": []})
                    continue
                reports.append(update_feed(host, state, backend, name, feed, base, force))
    return {"netns": host.label, "backend": backend, "feeds": reports}


def feed_status(state: State) -> list[dict]:
    """For `status`: each feed that has a record: entries, age of the last good fetch, last error."""
    d = state.dir / "feeds"
    out = []
    for path in sorted(d.glob("*.json")) if d.is_dir() else ():
        rec = state.read(f"feeds/{path.stem}") or {}
        age = None if rec.get("fetched_clock") is None else round(time.time() - rec["fetched_clock"])
        out.append({"feed": path.stem, "entries": rec.get("entries", 0), "age_seconds": age,
                    "fetched_at": rec.get("fetched_at"), "changed_at": rec.get("changed_at"),
                    "bad_lines": rec.get("bad", 0), "last_error": rec.get("last_error")})
    return out


def report_text(r: dict) -> str:
    lines = []
    for f in r["feeds"]:
        lines += [f"{d['file']}:{d['line']}:{d['col']}: warning: {d['message']}" for d in f["bad_lines"]]
        if f["error"]:
            lines.append(f"feed {f['feed']}: error: {f['error']}; the last good list stays")
        elif f.get("not_modified"):
            lines.append(f"feed {f['feed']}: not modified since the last fetch")
        else:
            lines.append(f"feed {f['feed']}: {f['entries']} entries, +{f['added']} -{f['deleted']} "
                         f"applied in place in {f.get('seconds', 0):.2f} s"
                         + (f", {len(f['bad_lines'])} bad line(s) skipped" if f["bad_lines"] else ""))
    return "\n".join(lines) + "\n"
