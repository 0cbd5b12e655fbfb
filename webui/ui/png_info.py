"""The PNG Info tab: drop an image, read its generation parameters, send them on."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
from PIL import Image, UnidentifiedImageError

from ..generation.images import read_infotext
from .common import pasted_values
from .img2img import send_image


@dataclass
class PngInfoTab:
    image: gr.Image
    infotext: gr.State
    send_txt2img: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button


def describe(path: str | None) -> tuple[str, str]:
    """(HTML to show, infotext) for an uploaded image file."""
    if not path:
        return "", ""
    try:
        text = read_infotext(path)
    except (OSError, UnidentifiedImageError) as error:
        return f'<div class="error">Cannot read the image: {html.escape(str(error))}</div>', ""
    if not text:
        return '<div class="pnginfo-empty">No generation parameters in this image.</div>', ""
    body = html.escape(text).replace("\n", "<br>")
    return f'<div class="infotext"><p><b>parameters</b></p><p>{body}</p></div>', text


def build() -> PngInfoTab:
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Source", type="filepath", sources=["upload", "clipboard"], elem_id="pnginfo_image",
                             height=420)
        with gr.Column():
            info_html = gr.HTML(elem_id="pnginfo_html")
            infotext = gr.State("")
            with gr.Row():
                send_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_img2img")
                send_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_inpaint")
    image.change(describe, image, [info_html, infotext])
    return PngInfoTab(image, infotext, send_txt2img, send_img2img, send_inpaint)


def wire_send_to(info: PngInfoTab, t2i, i2i, tabs: gr.Tabs) -> None:
    def to_txt2img(text: str):
        return {**pasted_values(text, t2i.controls), tabs: gr.Tabs(selected="txt2img")}

    def to_img2img(mode_id: str):
        def handler(path: str | None, text: str):
            if not path:
                return {}
            with Image.open(path) as image:
                image.load()
                return send_image(i2i, tabs, mode_id, image.copy(), text)
        return handler

    info.send_txt2img.click(to_txt2img, info.infotext, [tabs, *t2i.controls.paste_targets()])
    outputs = [tabs, i2i.mode_tabs, i2i.mode, i2i.inpaint_options, i2i.images["img2img"], i2i.images["inpaint"],
               *i2i.controls.paste_targets()]
    info.send_img2img.click(to_img2img("img2img"), [info.image, info.infotext], outputs)
    info.send_inpaint.click(to_img2img("inpaint"), [info.image, info.infotext], outputs)
