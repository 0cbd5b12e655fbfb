"""A1111's `modules.ui_common`: refresh buttons and small HTML helpers."""

from __future__ import annotations

import html

import gradio as gr

from webui import compat
from .ui_components import ToolButton

refresh_symbol = "\U0001f504"  # 🔄
folder_symbol = "\U0001f4c2"  # 📂


def create_refresh_button(refresh_component, refresh_method, refreshed_args, elem_id):
    """🔄 beside a component: runs refresh_method, then sets the component's properties from
    refreshed_args (a dict, or a function returning one)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

    def refresh():
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id)
    button.click(fn=refresh, inputs=[], outputs=components)
    return button


def plaintext_to_html(text, classname=None):
    content = "<br>\n".join(html.escape(x) for x in str(text).split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def setup_dialog(button_show, dialog, *, button_close=None):
    button_show.click(fn=lambda: gr.update(visible=True), outputs=[dialog])
    if button_close is not None:
        button_close.click(fn=lambda: gr.update(visible=False), outputs=[dialog])


__getattr__ = compat.report_missing_names(__name__)
