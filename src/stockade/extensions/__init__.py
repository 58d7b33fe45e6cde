"""One module per iptables extension; importing this package registers them all."""
import importlib
import pkgutil

from .base import REGISTRY, Context, Extension, Option, register
from .opaque import Opaque, Unread

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "values", "opaque", "ipset"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["REGISTRY", "Context", "Extension", "Opaque", "Option", "Unread", "register"]
