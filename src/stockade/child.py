"""Python child processes, which often run as root: the same stockade code as this process, and
nothing from the caller's working directory or environment.

`python -m X` puts the working directory first on sys.path, so a `stockade/` directory or a
`socket.py` there would run as root. Children run isolated (`-I`: no working directory, no
PYTHONPATH, no user site) with this process's own stockade put first on their path explicitly.
"""
from __future__ import annotations

import os
import sys

import stockade

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(stockade.__file__)))  # the directory holding `stockade`
CWD = "/"  # children start here: relative paths never resolve into the caller's directory
_RUN = ("import runpy, sys; del sys.argv[0]; sys.path.insert(0, sys.argv.pop(0)); "
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def python_module(module: str, *args: str) -> list[str]:
    """argv running `python -m module args...` isolated, with this stockade."""
    return [sys.executable, "-I", "-c", _RUN, ROOT, module, *args]


def python_code(code: str, *args: str) -> list[str]:
    """argv running `python -c code args...` isolated (the code may import only the standard library)."""
    return [sys.executable, "-I", "-c", code, *args]
