"""Script differential: a firewall script run by real bash in a sandbox, against stockade's reading of it.

`run_script` runs the script with real `bash` (with the case's arguments and environment) inside
a throwaway network namespace (stockade.kernel.netns.Netns) and, within it, a private mount and PID
namespace (`unshare --mount --pid --fork`), where:

- the root file system is read-only, and every directory a script may write to is an overlay
  whose upper layer is a tmpfs (/etc /var /usr /root /home /srv /opt /boot /media /work), or a
  fresh tmpfs (/tmp /run /dev/shm): the script sees the machine's files, its writes die with it;
- /sys and /proc/sys are read-only except /proc/sys/net, which belongs to the namespace;
- PATH has two directories. `real/` holds the tools whose effect is the subject of the test
  (iptables, ip6tables and their save/restore, ipset, ip, sysctl, modprobe without -r) and
  programs that only compute from their input and files (cat, grep, sed, awk, cut, ...), so
  `$(cat list)` and `while read ip; do ...; done < file` work as on a real host. `stub/` holds
  every other program installed here (and common ones that are not, like curl or systemctl):
  each logs its arguments and succeeds. A command found nowhere is logged and succeeds too
  (bash's command_not_found_handle). `sudo`, `nohup`, `nice`, `timeout` log and run their command.
- stdin is /dev/null, the namespace has no route out, and a timeout ends everything (the
  script is PID 1's child in its own PID namespace).

Then `iptables-save`, `ip6tables-save` and `ipset save` are read from the namespace. `differential`
compares them with `stockade parse SCRIPT --to iptables-save`, comments and counters aside, and
classifies the case: identical; reported (it differs, and stockade's diagnostic at the case's reviewed
`cause` line names what it could not resolve there: a file, a condition or a program only the target
machine has); refused (stockade exits non-zero naming a line with an error); or differs (stockade's
reading is wrong and it says nothing at the line that explains it).

This file is also the program run inside the sandbox (`python -I scriptrun.py --inner SPEC`), so
it must import nothing beyond the standard library at module level.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = HERE / "scripts.toml"
SHARED = Path(os.environ.get("STOCKADE_SHARED", ROOT.parent / "shared"))
# The collected scripts are third-party code kept out of this repository (see SOURCES.md).
STORE = Path(os.environ.get("STOCKADE_REALWORLD_SCRIPTS", SHARED / "corpus" / "realworld-scripts"))
SEEDS = SHARED / "seeds"
PACKAGE = ROOT / "src"

OUTCOMES = ("identical", "reported", "refused", "differs")
SAVES = ("iptables", "ip6tables", "ipset")

# -- the sandbox (runs inside `ip netns exec NS unshare --mount --pid --fork`) ---------------------------------

SCRATCH = "/run/.scriptrun"
CALLS = f"{SCRATCH}/calls.log"
OVERLAID = ("/etc", "/var", "/usr", "/root", "/home", "/srv", "/opt", "/boot", "/media", "/work")
FRESH = ("/tmp", "/dev/shm")
NETFILTER = ("iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
             "ip6tables-restore", "iptables-nft", "ip6tables-nft", "iptables-nft-save",
             "ip6tables-nft-save", "iptables-nft-restore", "ip6tables-nft-restore", "iptables-legacy",
             "ip6tables-legacy", "iptables-legacy-save", "ip6tables-legacy-save",
             "iptables-legacy-restore", "ip6tables-legacy-restore", "xtables-nft-multi",
             "xtables-legacy-multi", "ipset", "ip", "sysctl")
PURE = ("bash", "sh", "dash", "cat", "tac", "grep", "egrep", "fgrep", "sed", "awk", "gawk", "mawk",
        "cut", "tr", "head", "tail", "sort", "uniq", "wc", "seq", "xargs", "basename", "dirname",
        "expr", "printf", "echo", "test", "[", "true", "false", "env", "id", "whoami", "uname",
        "readlink", "realpath", "mktemp", "tee", "rm", "mkdir", "rmdir", "touch", "chmod", "chown",
        "cp", "mv", "ln", "ls", "find", "stat", "date", "which", "getent", "paste", "comm", "join",
        "fold", "rev", "nl", "od", "base64", "md5sum", "sha1sum", "sha256sum", "column", "tput", "getopt")
PASSING = ("sudo", "nohup", "nice", "ionice", "stdbuf", "timeout")
# Programs a plain Linux server has that may not be installed here; stubbed so that `which X` finds
# them. Nothing that marks another kind of system (uci, opkg, yum, ufw, firewall-cmd, docker, ...):
# scripts test for those to choose what to do.
ABSENT = ("curl", "wget", "service", "systemctl", "logger", "ifconfig", "route", "ping", "nc", "netstat",
          "ss", "sleep", "clear", "depmod", "insmod", "rmmod", "conntrack", "tc", "apt-get", "apt")

STUB = f"""#!/bin/bash
{{ printf %s "${{0##*/}}"; printf ' %q' "$@"; printf '\\n'; }} >> {CALLS}
exit 0
"""
PASS = f"""#!/bin/bash
{{ printf %s "${{0##*/}}"; printf ' %q' "$@"; printf '\\n'; }} >> {CALLS}
case ${{0##*/}} in
  sudo) while [[ $1 == -* ]]; do case $1 in -u|-g|-p|-C|-h|-U|-r|-t|-T) shift;; esac; shift; done;;
  nice) [[ $1 == -n ]] && shift 2; [[ $1 == -[0-9]* ]] && shift;;
  timeout) while [[ $1 == -* ]]; do case $1 in -s|-k) shift;; esac; shift; done; shift;;
  *) while [[ $1 == -* ]]; do shift; done;;
esac
[[ $# -gt 0 ]] || exit 0
exec "$@"
"""
# Removing a kernel module acts on the whole machine, so modprobe -r is logged, not run.
MODPROBE = f"""#!/bin/bash
{{ printf modprobe; printf ' %q' "$@"; printf '\\n'; }} >> {CALLS}
for a in "$@"; do case $a in --remove|-[a-zA-Z]*r*) exit 0;; esac; done
exec {{real}} "$@"
"""
NOT_FOUND = ("() { { printf %s \"$1\"; shift; printf ' %q' \"$@\"; printf '\\n'; } >> " + CALLS
             + "; return 0; }")


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def _seal(case_dir: str) -> None:
    """Make this mount namespace's file system read-only except for throwaway layers, with a copy of
    the case's directory in SCRATCH/case (so writes to it stay here, and one under /tmp is still found)."""
    _sh("mount", "-t", "tmpfs", "-o", "mode=755,size=256m", "scriptrun", "/run")
    shutil.copytree(case_dir, f"{SCRATCH}/case", symlinks=True)
    os.makedirs(f"{SCRATCH}/net")
    _sh("mount", "--bind", "/proc/sys/net", f"{SCRATCH}/net")
    _sh("mount", "--bind", "/proc/sys", "/proc/sys")
    _sh("mount", "-o", "remount,bind,ro", "/proc/sys")
    _sh("mount", "--move", f"{SCRATCH}/net", "/proc/sys/net")
    _sh("mount", "-o", "remount,bind,ro", "/sys")
    _sh("mount", "-o", "remount,bind,ro", "/")
    for d in OVERLAID:
        if os.path.isdir(d) and not os.path.islink(d):
            layer = f"{SCRATCH}/layers{d}"
            os.makedirs(f"{layer}/upper")
            os.makedirs(f"{layer}/work")
            _sh("mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={d},upperdir={layer}/upper,workdir={layer}/work", d)
    for d in FRESH:
        _sh("mount", "-t", "tmpfs", "-o", "mode=1777,size=64m", "scriptrun", d)


def _path_dirs(machine_path: str) -> tuple[str, str]:
    """The real/ and stub/ directories of the script's PATH."""
    real, stub = f"{SCRATCH}/real", f"{SCRATCH}/stub"
    os.makedirs(real)
    os.makedirs(stub)
    for name, text in (("stub.sh", STUB), ("pass.sh", PASS)):
        Path(SCRATCH, name).write_text(text)
        os.chmod(Path(SCRATCH, name), 0o755)
    keep = set(NETFILTER) | set(PURE)
    for name in sorted(keep):
        found = shutil.which(name, path=machine_path)
        if found:
            os.symlink(found, f"{real}/{name}")
    modprobe = shutil.which("modprobe", path=machine_path)
    if modprobe:
        Path(real, "modprobe").write_text(MODPROBE.replace("{real}", modprobe))
        os.chmod(Path(real, "modprobe"), 0o755)
    installed = {e.name for d in machine_path.split(":") if os.path.isdir(d) for e in os.scandir(d)}
    for name in sorted((installed | set(ABSENT) | set(PASSING)) - keep - {"modprobe"}):
        if "/" not in name and not name.startswith("."):
            os.symlink(f"{SCRATCH}/{'pass' if name in PASSING else 'stub'}.sh", f"{stub}/{name}")
    return real, stub


def _inner(spec: dict) -> dict:
    machine_path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    _seal(spec["cwd"])
    here = f"{SCRATCH}/case"
    script = os.path.join(here, os.path.relpath(spec["script"], spec["cwd"]))
    real, stub = _path_dirs(machine_path)
    Path(CALLS).touch()
    env = {"PATH": f"{stub}:{real}", "HOME": "/root", "USER": "root", "LOGNAME": "root",
           "SHELL": "/bin/bash", "LANG": "C.UTF-8", "TERM": "dumb",
           "BASH_FUNC_command_not_found_handle%%": NOT_FOUND, **spec["env"]}
    bash = shutil.which("bash", path=machine_path)
    result: dict = {"timed_out": False}
    if spec["pasted"]:   # as typed into a root shell: a line bash cannot parse does not end the others
        argv, stdin = [bash, "--norc", "--noprofile", "+H", "-i", "-s"], script
        env.update(PS1="", PS2="")
    else:
        argv, stdin = [bash, script, *spec["args"]], os.devnull
    try:
        with open(stdin, "rb") as f:
            proc = subprocess.run(argv, cwd=here, env=env, stdin=f, capture_output=True, timeout=spec["timeout"])
        result.update(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    except subprocess.TimeoutExpired as e:
        result.update(rc=None, timed_out=True, stdout=e.stdout or b"", stderr=e.stderr or b"")
    for k in ("stdout", "stderr"):
        result[k] = result[k].decode("utf-8", "replace")[-8000:]
    result["calls"] = Path(CALLS).read_text("utf-8", "replace").splitlines()
    saves, errors = {}, {}
    for name, argv in (("iptables", ["iptables-save"]), ("ip6tables", ["ip6tables-save"]),
                       ("ipset", ["ipset", "save"])):
        p = subprocess.run([shutil.which(argv[0], path=machine_path), *argv[1:]], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        saves[name] = p.stdout
        if p.returncode != 0:
            errors[name] = p.stderr.strip()
    result.update(saves=saves, save_errors=errors)
    return result


# -- the outer side (runs in the test process) ------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One script to compare: what bash runs, what stockade reads, with which arguments and environment."""

    name: str
    script: Path            # what bash runs (a pasted page: its command lines)
    source: Path            # what stockade reads
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    expect: str = "identical"
    reason: str = ""
    cause: str = ""         # `FILE:LINE` whose unresolved construct explains a difference (reviewed by hand)
    timeout: float = 60
    pasted: bool = False    # bash reads the script as if pasted into an interactive root shell


@dataclass
class KernelRun:
    rc: int | None
    timed_out: bool
    stdout: str
    stderr: str
    calls: list[str]
    saves: dict[str, str]
    save_errors: dict[str, str]


@dataclass
class Reading:
    rc: int
    stderr: str
    saves: dict[str, str]
    passed: list[str] = field(default_factory=list)   # arguments/environment stockade could be given

    @property
    def first_error(self) -> str:
        return next((ln for ln in self.stderr.splitlines() if ": error: " in ln), "")

    @property
    def diagnostics(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if re.search(r":\d+:\d+: (error|warning): ", ln)]

    def said_at(self, cause: str) -> str:
        """stockade's first diagnostic at `cause` (`FILE:LINE`, FILE a path's last parts), or ""."""
        file, _, line = cause.rpartition(":")
        return next((d for d in self.diagnostics
                     if (m := re.match(r"(.*):(\d+):\d+: ", d)) and m.group(1).endswith(file) and m.group(2) == line), "")


@dataclass
class Differential:
    case: Case
    kernel: KernelRun
    reading: Reading
    outcome: str
    difference: str    # the first differing line of each side, or ""

    def summary(self) -> str:
        """One line for the report: the outcome and why."""
        why = self.difference
        if self.outcome == "refused":
            why = f"{self.reading.first_error}; first difference: {why}"
        elif self.outcome == "reported":
            why = f"{why}; stockade said: {self.reading.said_at(self.case.cause)}"
        elif self.outcome == "differs" and self.reading.diagnostics:
            why = f"{why}; stockade only said: {self.reading.diagnostics[0]}"
        text = f"{self.outcome}: {why}" if why else self.outcome
        return text.replace(f"{self.case.source}:", f"{self.case.source.name}:")   # independent of where it is


def run_script(case: Case) -> KernelRun:
    """Run the case's script with real bash in a sandbox; the namespace's rulesets afterwards.
    A pasted case runs the page's command lines (`command_lines`), not the page."""
    from stockade.kernel.netns import Netns  # imported here: this file is also the sandbox's own program

    with tempfile.TemporaryDirectory(prefix="sk-scriptrun-") as tmp:
        script = case.script
        if case.pasted:
            script = Path(tmp, "commands.sh")
            script.write_text(command_lines(case.script.read_text(encoding="utf-8")), encoding="utf-8")
        spec = {"script": str(script), "args": list(case.args), "env": dict(case.env), "cwd": str(script.parent),
                "timeout": case.timeout, "pasted": case.pasted}
        with Netns() as ns:
            argv = ns.argv(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                            sys.executable, "-I", str(Path(__file__).resolve()), "--inner", json.dumps(spec)])
            proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=case.timeout + 60)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the sandbox failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    run = KernelRun(**json.loads(proc.stdout))
    if run.save_errors:   # the kernel's side cannot be read whole: no comparison can be trusted
        raise RuntimeError(f"reading the namespace's rulesets failed: {run.save_errors}")
    return run


def stockade_options() -> set[str]:
    """Which of --arg/--env this `stockade parse` accepts (the script reader is gaining them)."""
    helptext = subprocess.run([sys.executable, "-m", "stockade.cli", "parse", "--help"], capture_output=True,
                              text=True).stdout
    return {opt for opt in ("--arg", "--env") if re.search(rf"{opt}\b", helptext)}


def stockade_parse(case: Case, options: set[str]) -> Reading:
    """`stockade parse SOURCE --from script --to iptables-save`, given the case's arguments and environment
    where stockade accepts them; its output split per family."""
    passed: list[str] = []
    if "--arg" in options:
        for a in case.args:
            passed += ["--arg", a]
    if "--env" in options:
        for k, v in case.env:
            passed += ["--env", f"{k}={v}"]
    proc = subprocess.run([sys.executable, "-m", "stockade.cli", "parse", str(case.source), "--from", "script",
                           "--to", "iptables-save", *passed], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    return Reading(rc=proc.returncode, stderr=proc.stderr, saves=split_sections(proc.stdout), passed=passed)


def split_sections(text: str) -> dict[str, str]:
    """stockade's output per tool: each section starts with a `# iptables-save ...`, `# ip6tables-save ...`
    or `# ipset save ...` comment line."""
    out = dict.fromkeys(SAVES, "")
    current = None
    for line in text.splitlines(keepends=True):
        m = re.match(r"# (iptables|ip6tables)-save\b|# (ipset) save\b", line)
        if m:
            current = m.group(1) or m.group(2)
            continue
        if current is None:
            continue
        out[current] += line
    return out


def normalise(name: str, text: str) -> list[str]:
    """A save's lines without comments and counters; a set's members sorted (ipset prints a hash set
    in the order of its hash, which a random seed chooses)."""
    lines: list[str] = []
    members: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if name == "ipset":
            line = re.sub(r" packets \d+ bytes \d+| initval 0x[0-9a-f]+", "", line)   # counters, the seed
            if line.startswith("add "):
                members.append(line.rstrip())
                continue
            lines += sorted(members)
            members = []
        else:
            line = re.sub(r"\[\d+:\d+\]$", "[0:0]", line)
        lines.append(line.rstrip())
    return lines + sorted(members)


def first_difference(kernel: dict[str, str], stockade: dict[str, str]) -> str:
    """The first line where the two differ, per save, described for a person; "" if none."""
    for name in SAVES:
        a, b = normalise(name, kernel.get(name, "")), normalise(name, stockade.get(name, ""))
        if a == b:
            continue
        for i in range(max(len(a), len(b))):
            ka = a[i] if i < len(a) else "(end)"
            sb = b[i] if i < len(b) else "(end)"
            if ka != sb:
                return f"{name}-save line {i + 1}: kernel `{ka}`, stockade `{sb}`"
    return ""


def classify(kernel: KernelRun, reading: Reading, cause: str = "") -> tuple[str, str]:
    difference = first_difference(kernel.saves, reading.saves)
    if not difference:
        return "identical", ""
    if reading.rc != 0 and reading.first_error:
        return "refused", difference
    if cause and reading.said_at(cause):
        return "reported", difference
    return "differs", difference


def differential(case: Case, options: set[str] | None = None) -> Differential:
    kernel = run_script(case)
    reading = stockade_parse(case, stockade_options() if options is None else options)
    outcome, difference = classify(kernel, reading, case.cause)
    return Differential(case, kernel, reading, outcome, difference)


# -- the cases ----------------------------------------------------------------------------------------------------

COMMAND_LINE = re.compile(r"^\s*(?:[$#]\s*)?(?:(?:sudo\s+)?(?:/usr)?(?:/s?bin/)?(?:iptables|ip6tables|ipset)(?:\s|$)"
                          r"|[A-Za-z_][A-Za-z0-9_]*="
                          r"|for [A-Za-z_]\w* in \S.*$|do\s*$|done\s*$)")


def command_lines(page: str) -> str:
    """What an admin pastes from a tutorial page into a root shell: each physical line whose first word
    (after a `$ `/`# ` prompt and `sudo`) is iptables, ip6tables or ipset, that assigns a shell
    variable (`NAME=...`), or that is a `for NAME in ...`/`do`/`done` line of a loop around them,
    with its `\\` continuation lines, in order. The prose is left out."""
    out, lines, i = [], page.splitlines(), 0
    while i < len(lines):
        if COMMAND_LINE.match(lines[i]):
            out.append(re.sub(r"^\s*[$#]\s*", "", lines[i]))
            while lines[i].endswith("\\") and i + 1 < len(lines):
                i += 1
                out.append(lines[i])
        i += 1
    return "".join(f"{ln}\n" for ln in out)


def where(spec: str) -> Path:
    """A manifest path: `seeds:NAME` (the shared seed pages), `package:PATH` (under src/), or a path in the store."""
    kind, _, rest = spec.partition(":")
    if rest and kind == "seeds":
        return SEEDS / rest
    if rest and kind == "package":
        return PACKAGE / rest
    return STORE / spec


def cases() -> list[Case]:
    """Every case in the manifest."""
    out = []
    for entry in tomllib.loads(MANIFEST.read_text())["script"]:
        expect = entry.get("expect", "identical")
        if expect not in OUTCOMES:
            raise ValueError(f"{MANIFEST.name}: {entry['name']}: expect must be one of {OUTCOMES}")
        path = where(entry["path"])
        out.append(Case(name=entry["name"], script=path, source=path, args=tuple(entry.get("args", ())),
                        env=tuple(sorted(entry.get("env", {}).items())), expect=expect,
                        reason=entry.get("reason", ""), cause=entry.get("cause", ""), timeout=entry.get("timeout", 60),
                        pasted=bool(entry.get("commands_only"))))
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["--inner"]:
    print(json.dumps(_inner(json.loads(sys.argv[2]))))
