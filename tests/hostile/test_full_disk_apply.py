"""Issue 14, High 1: a full disk during `apply`. The state dir is a 2 MB tmpfs in a private mount
namespace, kept full from a moment on: from the start, once the worker armed its timer, once it wrote its journal (the kernel change follows; what
the journal's removal frees is taken again, so recording the result fails). Every time the apply
ends with the old ruleset live, or the new one with a live timer, and says which, without a
traceback; full before the command starts, it is an error line and nothing changes."""
from __future__ import annotations

import pytest

from .kernelkit import SmallDisk, full_text, policies, status, stockade_in

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize(("backend", "moment"), [(b, m) for b in ("iptables-nft", "nftables")
                                                  for m in (None, "pending", "journal")
                                                  if (b, m) != ("nftables", "journal")])  # nft: no journal
def test_disk_full_during_apply(netns, tmp_path, backend, moment):
    old, new = policies(tmp_path)
    with SmallDisk(tmp_path / "state") as disk:
        st = disk.dir
        assert stockade_in(disk, ["apply", str(old), "--netns", netns.name, "--confirm-timeout", "0",
                                  "--backend", backend], st).returncode == 0
        before = full_text(netns, backend)
        with disk.full_from(moment and st / netns.name / f"{moment}.json"):
            p = stockade_in(disk, ["apply", str(new), "--netns", netns.name, "--confirm-timeout", "60",
                                   "--force", "--backend", backend], st)
            after = full_text(netns, backend)
            code, s = status(netns.name, st, disk)
        assert "Traceback" not in p.stderr, p.stderr
        if after == before:  # the old ruleset: the command failed and says what is live
            assert p.returncode == 2 and "No space left on device" in p.stderr, p.stderr
            assert "nothing was changed" in p.stderr or f"the previous ruleset ({s['live_version']}) is live" in p.stderr
        else:  # the new ruleset: only with a live timer, and apply said so
            assert p.returncode == 0 and "rolls back to" in p.stdout, p.stderr
            assert s["pending"] is not None and code == 0 and not s.get("alarms"), (p.stderr, s)
