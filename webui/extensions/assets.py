"""The extensions' part of the page: our A1111-style page API (js/webui.js), then every active
extension's javascript/*.js (.mjs as modules) in load order, then their style.css files, all in
the page <head>; and `window.opts`, the settings, for page scripts.

The files are served by Gradio's own file route, so the UI login guards them as it guards the
rest of the UI, and Gradio is allowed exactly these files (`allowed_files`), nothing around them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from ..ui.gradio_compat import GRADIO3_CLOSED, GRADIO3_HIDDEN

PAGE_API = Path(__file__).resolve().parent / "js" / "webui.js"


def allowed_files(state) -> list[str]:
    files = [PAGE_API]
    for ext in state.extensions:
        if ext.active:
            files += ext.javascript + ([ext.stylesheet] if ext.stylesheet else [])
    return [str(path) for path in files]


def head_html(state) -> str:
    prefix = (state.flags.subpath or "").rstrip("/")
    tags = [_script(prefix, PAGE_API)]
    active = [ext for ext in state.extensions if ext.active]
    tags += [_script(prefix, path) for ext in active for path in ext.javascript]
    tags += [f'<link rel="stylesheet" href="{_url(prefix, ext.stylesheet)}">' for ext in active if ext.stylesheet]
    tags.append(f"<style>.{GRADIO3_HIDDEN} {{ display: none !important; }}</style>")  # extensions' visible=False rows
    # extensions' closed accordions while they are built open (gradio_compat), until webui.js closes them
    tags.append(f"<style>.{GRADIO3_CLOSED} > [data-testid=accordion-content] {{ display: none !important; }}</style>")
    return "\n".join(tags)


def _script(prefix: str, path: Path) -> str:
    kind = ' type="module"' if path.suffix == ".mjs" else ""
    return f'<script{kind} src="{_url(prefix, path)}"></script>'


def _url(prefix: str, path: Path) -> str:
    """Gradio's file route; the modification time makes browsers fetch a changed file again."""
    version = path.stat().st_mtime_ns if path.exists() else 0
    return html.escape(f"{prefix}/gradio_api/file={quote(str(path))}?v={version}")


def options_bridge(state, demo: gr.Blocks) -> gr.JSON:
    """A hidden component holding the settings; on every new value the page script updates
    `window.opts` and calls onOptionsAvailable/onOptionsChanged. Setting its value (e.g. after
    the Settings tab saved) refreshes them."""
    box = gr.JSON(visible="hidden", elem_id="settings_json")
    demo.load(state.options.as_dict, None, box, show_progress="hidden")
    box.change(None, box, None, js="(values) => { window.webuiSetOptions?.(values); return []; }")
    return box


def page_error_sink(state) -> gr.Textbox:
    """A hidden textbox the page script (webui.js) writes each error of an extension's page script into, as
    JSON {url, line, message}; it is recorded for that extension (diagnostics.page_error). Going through a
    Gradio event keeps it behind the UI login."""
    from .diagnostics import page_error

    box = gr.Textbox(visible="hidden", elem_id="extension_page_errors")

    def record(text: str) -> None:
        try:
            report = json.loads(text or "{}")
            page_error(state, str(report.get("url", "")), int(report.get("line") or 0), str(report.get("message", "")))
        except (ValueError, TypeError, AttributeError):
            return  # not a report from our page script

    box.change(record, box, None, show_progress="hidden", queue=False)
    return box
