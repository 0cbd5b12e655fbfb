"""The Gradio UI: `build_ui(state)` gives the Blocks the server mounts.

Tabs: txt2img, img2img (img2img, Sketch, Inpaint, Inpaint upload), PNG Info, Settings.
Every generation goes through `state.queue`; the UI only fills parameters and shows jobs.
"""

from __future__ import annotations

import gradio as gr

from ..state import SharedState
from . import img2img, png_info, settings, txt2img
from .common import Sessions, checkpoint_row


def build_ui(state: SharedState) -> gr.Blocks:
    sessions = Sessions(state)
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        checkpoint_row(state, demo)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                t2i = txt2img.build(state, sessions)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                i2i = img2img.build(state, sessions)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                info = png_info.build()
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings.build(state)
        img2img.wire_send_to(t2i, i2i, tabs)
        img2img.wire_send_to(i2i, i2i, tabs)
        png_info.wire_send_to(info, t2i, i2i, tabs)
    return demo
