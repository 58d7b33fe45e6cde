"""`ansible-test sanity` on the collection in ansible/ (every sanity test, Python 3.11). Slow and it
installs each test's requirements from the package index into its own virtualenvs (about 5 minutes),
so it runs in CI (CI=true) and with STOCKADE_ANSIBLE_SANITY=1. ansible-test's pip bootstrap comes from a host this machine cannot
reach; tests/ansible/get_pip.py stands in for it, in a private HOME."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTION = Path(__file__).resolve().parents[1] / "ansible"


@pytest.mark.skipif(os.environ.get("STOCKADE_ANSIBLE_SANITY") != "1" and os.environ.get("CI") != "true",
                    reason="set STOCKADE_ANSIBLE_SANITY=1 (CI runs it)")
def test_ansible_test_sanity(tmp_path):
    home = tmp_path / "home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "ansible" / "get_pip.py", cache / "get_pip_24_2.py")
    if Path.home().joinpath(".config", "pip").is_dir():  # the index settings the machine's pip uses
        shutil.copytree(Path.home() / ".config" / "pip", home / ".config" / "pip")
    root = tmp_path / "ansible_collections" / "stockade" / "firewall"
    shutil.copytree(COLLECTION, root)
    r = subprocess.run([str(Path(sys.executable).parent / "ansible-test"), "sanity", "--python",
                        f"{sys.version_info.major}.{sys.version_info.minor}"], cwd=root, capture_output=True,
                       text=True, env=dict(os.environ, HOME=str(home)), check=False, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
