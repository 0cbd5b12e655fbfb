"""A1111's `modules.sd_hijack_utils.CondFunc`: an extension replaces a function of its choosing (named by dotted
path, or given as a callable) with one that runs instead of it when a condition holds. This is the extension's
own monkeypatching, done the way A1111 does it; our code registers nothing through it."""

from __future__ import annotations

import importlib

from webui import compat


def _resolve(path: str):
    """(owner object, attribute name) for "package.module.Class.attr": the longest importable module prefix,
    then attributes down from it."""
    parts = path.split(".")
    if len(parts) < 2:
        raise ValueError(f"CondFunc: {path!r} is not a dotted path like 'module.function'")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        if not hasattr(owner, parts[-1]):
            raise AttributeError(f"CondFunc: {path!r}: {owner!r} has no attribute {parts[-1]!r}")
        return owner, parts[-1]
    raise ImportError(f"CondFunc: no module found for {path!r}")


class CondFunc:
    """`CondFunc(orig_func, sub_func, cond_func)`: calls go to `sub_func(orig_func, *args, **kwargs)` when
    `cond_func(orig_func, *args, **kwargs)` is true (or there is no cond_func), else to `orig_func`. With a
    dotted path, that attribute is replaced by the wrapper. Returns the wrapper, as A1111's does."""

    def __new__(cls, orig_func, sub_func, cond_func=None):
        owner = name = None
        if isinstance(orig_func, str):
            owner, name = _resolve(orig_func)
            orig_func = getattr(owner, name)
        self = super().__new__(cls)
        self._orig, self._sub, self._cond = orig_func, sub_func, cond_func

        def wrapper(*args, **kwargs):
            return self(*args, **kwargs)

        wrapper.__wrapped__ = orig_func
        if owner is not None:
            setattr(owner, name, wrapper)
        return wrapper

    def __call__(self, *args, **kwargs):
        if self._cond is None or self._cond(self._orig, *args, **kwargs):
            return self._sub(self._orig, *args, **kwargs)
        return self._orig(*args, **kwargs)


__getattr__ = compat.report_missing_names(__name__)
