"""A1111's `modules.extensions`: the installed extensions (our loader's Extension objects)."""

from __future__ import annotations

from webui import compat


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name == "extensions":
        return list(compat.state().extensions)
    if name in ("extensions_dir", "extensions_builtin_dir"):  # A1111 imports them here from paths_internal
        from . import paths

        return getattr(paths, name)
    raise compat.missing(__name__, name)


def active() -> list:
    return [ext for ext in compat.state().extensions if getattr(ext, "active", ext.enabled)]
