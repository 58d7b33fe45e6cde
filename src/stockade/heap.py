"""The cyclic garbage collector paused while a reader or an analysis builds its tables.

CPython's collector walks every tracked object, the parsed model included, each time the
heap has grown by a quarter. Linting a 50,000-rule blocklist made eight such walks over
0.35-0.8 million objects: about half of its time, and a share that grows with the model
(lint's growth exponent was 1.19 with the collector, 1.07 without). The analyses' garbage
is freed by reference counting; the few cycles they leave (a compiled chain's namespace)
are collected once the collector runs again. Reading a dump likewise makes millions of objects that
all live on (for 200,000 rules the collector's passes were 40% of the time).
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside; the collector is as it was after (also on an exception)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
