"""A1111's `modules` package for extensions, over our SharedState.

Extensions `import modules.shared`, `modules.scripts`, ...: `install()` puts this folder on
sys.path so the package `modules` (webui/compat/modules) is found, and `bind(state)` makes
every one of its modules read and change that state. The modules hold no state of their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

_FOLDER = str(Path(__file__).resolve().parent)
_bound = None


def install() -> None:
    """Make `import modules.<name>` find our package (before extension scripts are loaded)."""
    if _FOLDER not in sys.path:
        sys.path.insert(0, _FOLDER)
    from webui.ui import gradio_compat

    gradio_compat.install()  # Gradio 3 names (gr.Box, .update, .style) before any extension code runs
    from modules import script_callbacks, shared  # noqa: F401  (imported once, so an error shows here)


def bind(state) -> None:
    """Point `modules.*` at `state` (one SharedState per process serves extensions)."""
    global _bound
    _bound = state


def state():
    """The bound SharedState; extensions only run after `bind`."""
    if _bound is None:
        raise RuntimeError("webui.compat.bind(state) has not been called: no WebUI state for extensions")
    return _bound


def bound() -> bool:
    return _bound is not None


def missing(module: str, name: str) -> AttributeError:
    """The AttributeError for a name a `modules.*` module lacks, recorded for the extension that asked
    (shown in the Extensions tab, see webui/extensions/diagnostics.py)."""
    if not name.startswith("__"):
        from webui.extensions.diagnostics import missing_name

        missing_name(_bound, f"{module}.{name}")
    return AttributeError(f"module {module!r} has no attribute {name!r}")


def report_missing_names(module: str):
    """A module `__getattr__` for the compat modules that have no dynamic names: every miss is recorded."""
    def __getattr__(name: str):
        raise missing(module, name)
    return __getattr__
