"""The Gradio UI: `build_ui(state)` gives the Blocks the server mounts.

Tabs: txt2img, img2img (img2img, Sketch, Inpaint, Inpaint upload), Extras, PNG Info, the tabs extensions
add (on_ui_tabs), Settings, Extensions. Every generation goes through `state.queue`; the UI only
fills parameters and shows jobs. While the page is built, extensions hear of every component
(before_component/after_component, see scripts.ComponentHooks).
"""

from __future__ import annotations

import gradio as gr

from ..state import SharedState
from ..extensions import assets
from . import extensions_tab, icons, img2img, merger, png_info, settings, txt2img
from . import extras as extras_tab
from .common import Sessions, checkpoint_row, wire_family_defaults
from .scripts import ComponentHooks, extension_tabs, render_extension_tabs


def build_ui(state: SharedState) -> gr.Blocks:
    hooks = ComponentHooks(state)
    with hooks.active():
        state.callbacks.run("before_ui")
        state.callbacks.run("ui_settings")  # first, as in A1111: scripts' ui() may read these settings
        return _page(state, hooks, extension_tabs(state))  # extensions' tabs are Blocks of their own


def _page(state: SharedState, hooks: ComponentHooks, extra_tabs: list) -> gr.Blocks:
    sessions = Sessions(state)
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        checkpoint = checkpoint_row(state, demo, sessions)  # a non-admin's choice is their session's own
        assets.options_bridge(state, demo)  # window.opts for extensions' page scripts
        assets.page_error_sink(state)  # errors of extensions' page scripts, for the Extensions tab
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"), hooks.tab(state.runners.get("txt2img")):
                t2i = txt2img.build(state, sessions)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"), hooks.tab(state.runners.get("img2img")):
                i2i = img2img.build(state, sessions)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras_tab.build(state)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                info = png_info.build()
            with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
                merger.build(state)
            render_extension_tabs(extra_tabs)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings.build(state)
            extensions_tab.build(state)
        wire_family_defaults(state, demo, checkpoint, [t2i, i2i])
        img2img.wire_send_to(t2i, i2i, tabs)
        img2img.wire_send_to(i2i, i2i, tabs)
        png_info.wire_send_to(info, t2i, i2i, tabs)
        txt2img.generate_shortcut(demo)
        txt2img.show_save_style_to_writers(state, demo, [t2i, i2i])
        icons.label_buttons(demo)  # last: it names the buttons made above
    return demo
