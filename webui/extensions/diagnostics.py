"""What an extension uses that this WebUI does not provide, shown for that extension in the Extensions tab.

A1111 extensions fail in quiet ways here: a `modules.*` name or setting we lack raises an AttributeError an
extension may catch and carry on without, and its page script may throw in the browser. Each such event is
recorded on the extension it came from (found from the Python stack, or from the script's URL) as one line
in `Extension.warnings`: what, and where (file and line).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

MAX_NOTES = 20  # per extension: a script that fails in a loop must not grow the list without end


def _owner(extensions, path: str | Path):
    """The active extension whose folder holds `path`, and the path relative to it."""
    try:
        path = Path(path).resolve()
    except (OSError, ValueError):
        return None, None
    for ext in extensions or ():
        root = Path(ext.path).resolve()
        if path.is_relative_to(root):
            return ext, path.relative_to(root).as_posix()
    return None, None


def note(ext, text: str) -> None:
    if text not in ext.warnings and len(ext.warnings) < MAX_NOTES:
        ext.warnings.append(text)
        log.warning("extension %s: %s", ext.name, text)


def missing_name(state, what: str) -> None:
    """Record that the extension code calling us right now asked for `what` (e.g. "modules.shared.foo")."""
    if state is None:
        return
    frame = sys._getframe(1)
    while frame is not None:
        ext, relative = _owner(state.extensions, frame.f_code.co_filename)
        if ext is not None:
            note(ext, f"uses {what}, which this WebUI does not provide ({relative}, line {frame.f_lineno})")
            return
        frame = frame.f_back


def page_error(state, url: str, line: int, message: str) -> bool:
    """Record an error thrown in the browser by an extension's page script, named by its URL (Gradio's
    `/gradio_api/file=<path>` route, see assets.py). False when the URL is no extension's."""
    path = unquote(urlparse(url or "").path).split("file=", 1)[-1]
    ext, relative = _owner(state.extensions, path) if path else (None, None)
    if ext is None:
        return False
    note(ext, f"its page script failed: {str(message)[:200]} ({relative}, line {int(line or 0)})")
    return True


def where(ext, error: BaseException) -> str:
    """' (file, line N)' of the innermost traceback entry inside the extension's folder, or ''."""
    found = ""
    tb = error.__traceback__
    while tb is not None:
        owner, relative = _owner([ext], tb.tb_frame.f_code.co_filename)
        if owner is not None:
            found = f" ({relative}, line {tb.tb_lineno})"
        tb = tb.tb_next
    return found
