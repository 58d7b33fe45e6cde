"""`stockade apply / confirm / rollback / repair`: the steps in order, for the CLI to call.

apply: compile (done by the caller), take the lock, undo what a killed stockade left (saying
what), choose the backend, read the live part, run the lockout check, save the part `rollback`
will restore, and hand the lock and the job to the detached worker (rollback.py), which arms the
timer, applies and reports; apply returns as soon as it has. A state write that fails before the
worker starts changes nothing and says so.
confirm: confirmed.json (with the job id) is the commit point; the timer stands down when it
sees it, and the rollback target is dropped, so `rollback` cannot undo a confirmed change.
repair: the explicit undo (`status` only reports): a half-done transaction, a dead timer (it
fires now), a pending apply from an earlier boot (discarded: that boot's rules are gone).
remove: stockade's part out of the kernel in one transaction (its chains, hooks and sets, or its
table), the filter policies it set back to ACCEPT (FORWARD stays as it is where Docker's
DOCKER-USER chain exists: Docker sets it to DROP to keep its containers from being routed to),
a pending apply ended (its timer stands down), its records and its boot files gone. Other tools'
rules stay. Opening, never closing, it needs no timer.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..files import WriteError
from ..policy.compile import CompiledPolicy, compile_policy
from . import access
from . import backend as backends
from .host import Host, KernelError
from .live import read_part
from .lock import locked
from .part import desired
from .rollback import confirmed, restore_previous, spawn, worker_alive
from .state import State, boot_id, now
from .transaction import recover


class Refused(KernelError):
    """The check says the change would lock the admin out; nothing was changed."""

    def __init__(self, message: str, blocked: list[access.AccessProbe]):
        super().__init__(message, hint="fix the policy's admin group or ssh allowance, or pass --force if you are sure")
        self.blocked = blocked


@dataclass
class Applied:
    backend: str
    version: str
    previous: str
    deadline: float | None
    probes: list[access.AccessProbe] = field(default_factory=list)
    diff: object | None = None  # semantics.diff.Diff, when the old policy is known
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"backend": self.backend, "version": self.version, "previous": self.previous,
                "rollback_at": self.deadline, "access": [p.to_json() for p in self.probes],
                "diff": self.diff.to_json() if self.diff is not None else None, "notes": self.notes}

    def text(self) -> str:
        lines = [f"{p.who} {p.src} -> port {p.port} ({'established' if p.established else 'new'}): {p.verdict}"
                 for p in self.probes]
        lines += [f"note: {n}" for n in self.notes]
        if self.diff is not None:
            lines.append(self.diff.text().rstrip("\n"))
        lines.append(f"applied {self.version} with {self.backend} (previous: {self.previous})")
        if self.deadline is None:
            lines.append("confirmed (no rollback timer)")
        else:
            at = time.strftime("%H:%M:%S", time.localtime(self.deadline))
            lines.append(f"rolls back to {self.previous} at {at} unless `stockade confirm` before then")
        return "\n".join(lines) + "\n"


def _old_rulesets(state: State, live_digest: str, notes: list[str]):
    """The model of what is live now, for the semantic diff: the last applied policy, recompiled, if
    the live part is still what stockade applied; empty (nothing of stockade's) if none was."""
    rec = state.read("applied")
    if rec is None or rec.get("policy") is None:
        return {}
    if rec["version"] != live_digest:
        notes.append("the live rules differ from what stockade applied (drift); the diff is against "
                     f"the policy applied last ({rec['policy']})")
    try:
        return compile_policy(rec["policy"], rec.get("policy_text")).rulesets
    except Exception as e:  # noqa: BLE001 -- the old policy's group files may be gone: no diff then, said so
        notes.append(f"cannot recompile the previous policy for the diff: {e}")
        return None


@dataclass
class Plan:
    """What `apply` would do, read without changing anything (`apply --check`, Ansible's check mode)."""

    backend: str
    live: str  # the live part's digest
    target: str  # the digest of the part the policy compiles to
    current: bool  # the live part is what applying this policy made live (and nothing changed it since)
    pending: bool  # an apply waits for confirmation
    probes: list[access.AccessProbe]
    diff: object | None  # semantics.diff.Diff against the last applied policy (or nothing of stockade's)
    notes: list[str]

    @property
    def changed(self) -> bool:
        return not self.current

    def to_json(self) -> dict:
        return {"changed": self.changed, "backend": self.backend, "live": self.live, "target": self.target,
                "pending": self.pending, "access": [p.to_json() for p in self.probes],
                "blocked": [p.to_json() for p in self.probes if p.verdict != "ACCEPT"],
                "diff": self.diff.to_json() if self.diff is not None else None, "notes": self.notes}

    def text(self) -> str:
        lines = [f"{p.who} {p.src} -> port {p.port} ({'established' if p.established else 'new'}): {p.verdict}"
                 for p in self.probes]
        lines += [f"note: {n}" for n in self.notes]
        if self.changed and self.diff is not None:
            lines.append(self.diff.text().rstrip("\n"))
        lines.append(f"would apply {self.target} with {self.backend} (live: {self.live})" if self.changed else
                     f"nothing to apply: the live part is the policy's ({self.live})")
        return "\n".join(lines) + "\n"


def plan_policy(c: CompiledPolicy, netns: str | None, backend: str = "auto", env: dict | None = None) -> Plan:
    """Read-only: the live part against the one the policy makes, the access check and the semantic diff."""
    host, state = Host(netns), State.for_netns(netns)
    rec = state.read("applied")
    chosen = backends.choose(host, backend, rec and rec.get("backend"))
    docker = backends.docker_user(host, chosen) if chosen != "nftables" else {}
    live = read_part(host, chosen)
    target = desired(c, chosen, docker)
    judged, _ = access.lockouts(c, host, env)
    notes: list[str] = []
    diff = None
    # the kernel prints a part back in its own words, so the live digest is compared with what the last
    # apply read back, and the policy's compiled part with what that apply compiled
    current = rec is not None and rec.get("target") == target.digest and rec.get("version") == live.digest \
        and rec.get("backend") == chosen
    if not current:
        old = _old_rulesets(state, live.digest, notes)
        if old is not None:
            from ..semantics.diff import semantic_diff
            diff = semantic_diff(old, c.rulesets)
    return Plan(chosen, live.digest, target.digest, current, state.read("pending") is not None, judged, diff, notes)


def apply_policy(c: CompiledPolicy, policy_path: str, netns: str | None, timeout: int, force: bool,
                 backend: str = "auto", env: dict | None = None, progress=None) -> Applied:
    host, state = Host(netns), State.for_netns(netns)
    say = progress or (lambda _m: None)
    with locked(state.dir / "lock") as fd:
        notes = [f"repair: {n}" for n in _resolve(host, state, keep_target=True)]
        for n in notes:
            say(n)
        rec = state.read("applied")
        chosen = backends.choose(host, backend, rec and rec.get("backend"))
        docker = backends.docker_user(host, chosen) if chosen != "nftables" else {}
        live = read_part(host, chosen)
        target = desired(c, chosen, docker)
        say("checking that the SSH clients and admins keep access")
        judged, blocked = access.lockouts(c, host, env)
        if blocked and not force:
            raise Refused("the new policy would cut off " + ", ".join(
                f"{p.who} {p.src} ({'established' if p.established else 'new'} to port {p.port}: {p.verdict})"
                for p in blocked), blocked)
        notes += [f"DOCKER-USER found (IPv{f}): inbound checks hooked there" for f, y in docker.items() if y]
        diff = None
        old = _old_rulesets(state, live.digest, notes)
        if old is not None:
            try:
                from ..semantics.diff import semantic_diff
                say("computing what changes")
                diff = semantic_diff(old, c.rulesets)
            except ImportError:
                pass
        pending = state.read("pending")
        try:
            if pending is None or state.read("previous") is None:
                state.write("previous", {"part": live.to_json(), "at": now(), "applied": rec})
            else:
                notes.append("an unconfirmed apply was pending: it is replaced, and rollback still returns to the "
                             "ruleset from before it")
            previous = state.read("previous")["part"]["digest"]
            job_id = secrets.token_hex(6)
            state.write("job", {"id": job_id, "target": target.to_json(), "timeout": timeout,
                                "policy": str(Path(policy_path).resolve()), "policy_text": c.text})
        except (WriteError, OSError) as e:
            raise KernelError(f"{e}; nothing was changed (live: {live.digest})") from None
        say("applying")
        report = spawn(netns, state, job_id, fd)
    if not report.get("ok"):
        live_now = "" if "live" in report else _what_is_live(host, state, live)
        raise KernelError(report.get("error", "apply failed") + live_now)
    return Applied(chosen, report["version"], previous, report.get("deadline"), judged, diff, notes)


def _what_is_live(host: Host, state: State, before) -> str:
    """For a worker that died without a report: what is live now, and what to do."""
    try:
        now_live = read_part(host, before.backend)
    except KernelError as e:
        return f"; cannot read what is live: {e}"
    if now_live.digest == before.digest and state.read("journal") is None:
        return f"; the previous ruleset ({before.digest}) is live" + (
            "; its leftover timer record is an alarm until `stockade repair`" if state.read("pending") else "")
    return (f"; live now: {now_live.digest} (not the previous {before.digest}) and no rollback timer runs: "
            "run `stockade repair` to restore the previous ruleset")


def confirm(netns: str | None) -> dict:
    """Keep what the last apply made live; the saved previous part is dropped with the timer, so a
    later `rollback` cannot undo a confirmed change."""
    state = State.for_netns(netns)
    with locked(state.dir / "lock"):
        pending = state.read("pending")
        if pending is None:
            raise KernelError("nothing to confirm: no apply is waiting for confirmation")
        note = None if worker_alive(pending) else "the rollback timer was already dead; the live ruleset is kept"
        rec = state.read("applied")
        if rec is None or rec.get("job") != pending["id"]:
            raise KernelError("cannot confirm: the waiting apply did not record what it made live; "
                              "run `stockade rollback` to restore the previous ruleset")
        rec["confirmed_at"] = now()
        state.write("confirmed", {**rec, "job": pending["id"]})  # the commit point: the timer stands down
        state.remove("pending")
        state.remove("previous")
    return {"confirmed": rec["version"], "at": rec["confirmed_at"], "note": note}


def rollback(netns: str | None) -> dict:
    host, state = Host(netns), State.for_netns(netns)
    with locked(state.dir / "lock"):
        pending = state.read("pending")
        if state.read("previous") is None or (pending is not None and pending.get("boot") != boot_id()):
            raise KernelError("nothing to roll back to: no unconfirmed apply is waiting"
                              + (" in this boot (run `stockade repair`)" if pending else ""))
        live = restore_previous(host, state, "stockade rollback")
        state.remove("previous")
    return {"restored": live.digest, "backend": live.backend}


def _resolve(host: Host, state: State, keep_target: bool) -> list[str]:
    """Undo what a killed stockade left behind; each line says what was undone. A half-done
    transaction is put back; a dead timer (same boot) fires now, unless `keep_target` (apply: the
    new apply re-arms one for the same previous ruleset); a timer from an earlier boot is discarded
    with its previous ruleset (that boot's rules are gone; what the boot loaded is live)."""
    done = []
    j = state.read("journal")
    if j is not None and recover(host, state):
        done.append(f"undid a transaction a killed stockade left half done: {j['from']['digest']} is live again "
                    f"(it was changing to {j['to']['digest']})")
    pending = state.read("pending")
    if pending is not None and confirmed(state, pending):
        state.remove("pending")
        state.remove("previous")
        return done + ["finished a `confirm` that was killed after its commit"]
    if pending is None or worker_alive(pending):
        return done
    if pending.get("boot") != boot_id():
        state.remove("pending")
        state.remove("previous")
        done.append("discarded the unconfirmed apply pending from an earlier boot (its rollback target belonged "
                    "to that boot); what is live now stays")
    elif keep_target:
        done.append("the rollback timer of the previous unconfirmed apply was dead; this apply arms a new one "
                    "that returns to the same previous ruleset")
    else:
        live = restore_previous(host, state, "repair: the rollback timer was dead")
        state.remove("previous")
        done.append(f"the rollback timer was dead: rolled back now, {live.digest} is live")
    return done


def repair(netns: str | None) -> dict:
    """`stockade repair`: the explicit undo of what a killed stockade left (status only reports it)."""
    host, state = Host(netns), State.for_netns(netns)
    with locked(state.dir / "lock"):
        done = _resolve(host, state, keep_target=False)
    return {"repaired": done, "text": "\n".join(done or ["nothing to repair"]) + "\n"}



def remove(netns: str | None, root: str | None = None, check: bool = False) -> dict:
    """`stockade remove` (see the module docstring); with check, what it would do, changing nothing."""
    from ..files import remove as unlink
    from .part import POLICY_CHAINS, OwnedPart, OwnedTable, owned_text, parse_owned
    from .persist import changed_paths, unpersist, unpersist_plan
    from .transaction import apply as transact

    host, state = Host(netns), State.for_netns(netns)
    with locked(state.dir / "lock"):
        notes = [] if check else [f"repair: {n}" for n in _resolve(host, state, keep_target=True)]
        rec = state.read("applied")
        chosen = backends.choose(host, "auto", rec and rec.get("backend"))
        live = read_part(host, chosen)
        policies: dict[str, dict[str, str]] = {}
        target = OwnedPart(chosen, {"nft": ""})
        if chosen != "nftables":
            docker = backends.docker_user(host, chosen)
            text = {}
            for f in ("4", "6"):
                now_live = parse_owned(live.text.get(f, "")).get("filter", OwnedTable()).policies
                policies[f] = {c: now_live.get(c, "ACCEPT") if c == "FORWARD" and docker[int(f)] else "ACCEPT"
                               for c in POLICY_CHAINS}
                text[f] = owned_text({"filter": OwnedTable(policies[f])})
            target = OwnedPart(chosen, {**text, "sets": ""})
        in_kernel = not live.empty or (rec is not None and live.digest != target.digest)
        records = [n for n in ("applied", "confirmed", "pending", "previous", "job") if state.read(n) is not None]
        boot, gone = unpersist_plan(root, chosen, check)  # a boot file that would not load: refused here
        files = changed_paths(boot, gone, root)
        out = {"changed": bool(in_kernel or records or files), "backend": chosen, "removed": live.digest if in_kernel
               else None, "policies": policies, "files": files, "ended_pending": state.read("pending") is not None,
               "notes": notes}
        if check or not out["changed"]:
            return out
        if in_kernel:
            transact(host, live, target, state)
        unpersist(boot, gone, root)
        for name in (*records, "journal"):  # the pending apply's timer stands down when its record is gone
            state.remove(name)
        for name in state.dir.joinpath("feeds").glob("*"):
            unlink(name)
    return out
