"""The img2img tab with its modes (img2img, Sketch, Inpaint, Inpaint upload), and the
"Send to img2img / inpaint" buttons that fill it from a gallery."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageChops, ImageEnhance, ImageFilter

from ..generation.img2img import MASKED_CONTENT, RESIZE_MODES, Img2ImgParams
from ..generation.params import ParamsError
from ..state import SharedState
from .common import (Controls, OutputPanel, Sessions, numeric_params, output_panel, pasted_values, sampler_controls,
                     seed_controls, size_batch_cfg_controls)
from .extra_networks import extra_networks
from .interrogate import interrogate_button
from .scripts import paste_into, script_ui
from .txt2img import GenerationTab, prompt_row, wire_generation

# A1111's order (its img2img mode numbers): img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload.
MODES = (("img2img", "img2img"), ("Sketch", "sketch"), ("Inpaint", "inpaint"), ("Inpaint sketch", "inpaint_sketch"),
         ("Inpaint upload", "inpaint_upload"))
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")


@dataclass
class Img2ImgTab(GenerationTab):
    mode: gr.State  # index into MODES
    mode_tabs: gr.Tabs
    images: dict  # mode id -> image component(s)
    inpaint_options: gr.Group


def painted_mask(editor: dict | None) -> Image.Image | None:
    """White where any layer of an image editor was painted on, black elsewhere."""
    if not editor or editor.get("background") is None:
        return None
    size = editor["background"].size
    mask = Image.new("L", size, 0)
    for layer in editor.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        mask = ImageChops.lighter(mask, alpha.point(lambda v: 255 if v else 0))
    return mask


def sketched_inpaint(editor: dict | None, mask_alpha: float = 0, mask_blur: int = 0
                     ) -> tuple[Image.Image | None, Image.Image | None]:
    """A1111's Inpaint sketch: the colours painted over the image become the init image where they were painted
    (blended in over `mask_blur` pixels), and where they were painted is the mask; Mask transparency
    (`mask_alpha`, 0-100) dims the mask, so the painted colours guide the result less strictly."""
    mask = painted_mask(editor)
    if mask is None:
        return None, None
    original = editor["background"].convert("RGB")
    sketch = (editor.get("composite") or original).convert("RGB")
    if sketch.size != original.size:
        sketch = sketch.resize(original.size, Image.Resampling.LANCZOS)
    if mask_alpha:
        mask = ImageEnhance.Brightness(mask).enhance(1 - float(mask_alpha) / 100)
    if mask_blur:
        blur = ImageFilter.GaussianBlur(mask_blur)
        return Image.composite(sketch.filter(blur), original, mask.filter(blur)), mask
    return Image.composite(sketch, original, mask), mask


def init_image_and_mask(mode: int, data: dict, images: dict) -> tuple[Image.Image | None, Image.Image | None]:
    kind = MODES[mode][1]
    if kind == "img2img":
        return data[images["img2img"]], None
    if kind == "sketch":
        editor = data[images["sketch"]]
        return (editor or {}).get("composite"), None
    if kind == "inpaint":
        editor = data[images["inpaint"]]
        return (editor or {}).get("background"), painted_mask(editor)
    if kind == "inpaint_sketch":
        # (Interrogate sends the editor alone: the sliders then count as 0.)
        editor, mask_alpha, mask_blur = (data.get(key) for key in images["inpaint_sketch"])
        return sketched_inpaint(editor, mask_alpha or 0, int(mask_blur or 0))
    image, mask = images["inpaint_upload"]
    return data[image], data[mask]


def mode_selected(index: int):
    def select():
        return index, gr.update(visible=MODES[index][1].startswith("inpaint"))
    return select


def build(state: SharedState, sessions: Sessions) -> Img2ImgTab:
    controls = Controls(defaults=state.models.generation_defaults())
    buttons = prompt_row(state, controls, "img2img")
    extra_networks(state, controls["prompt"], "img2img", sessions)
    images: dict = {}
    mode = gr.State(0)
    with gr.Row():
        with gr.Column(scale=1, elem_id="img2img_settings"):
            with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
                tabs = []
                with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as tab:
                    images["img2img"] = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", format="png",
                                                 sources=["upload", "clipboard"], elem_id="img2img_image", height=420)
                    tabs.append(tab)
                with gr.Tab("Sketch", id="sketch", elem_id="img2img_img2img_sketch_tab") as tab:
                    images["sketch"] = gr.ImageEditor(label="Image for img2img", type="pil", format="png", elem_id="img2img_sketch",
                                                      sources=["upload", "clipboard"], height=420,
                                                      brush=gr.Brush(color_mode="defaults"))
                    tabs.append(tab)
                with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tab:
                    images["inpaint"] = gr.ImageMask(label="Image for inpainting with mask", type="pil", format="png",
                                                     elem_id="img2maskimg", sources=["upload", "clipboard"], height=420,
                                                     brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                                     layers=gr.LayerOptions(allow_additional_layers=False))
                    tabs.append(tab)
                with gr.Tab("Inpaint sketch", id="inpaint_sketch", elem_id="img2img_inpaint_sketch_tab") as tab:
                    inpaint_sketch = gr.ImageEditor(label="Color sketch inpainting", type="pil", format="png",
                                                    elem_id="inpaint_sketch", sources=["upload", "clipboard"],
                                                    height=420, brush=gr.Brush(color_mode="defaults"))
                    mask_alpha = gr.Slider(0, 100, value=0, step=1, label="Mask transparency",
                                           elem_id="img2img_mask_alpha")
                    tabs.append(tab)
                with gr.Tab("Inpaint upload", id="inpaint_upload", elem_id="img2img_inpaint_upload_tab") as tab:
                    images["inpaint_upload"] = (
                        gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", format="png", elem_id="img_inpaint_base"),
                        gr.Image(label="Mask", type="pil", image_mode="L", format="png", elem_id="img_inpaint_mask"),
                    )
                    tabs.append(tab)
            interrogate_button(state, controls["prompt"], {mode, images["img2img"], images["sketch"], images["inpaint"],
                                                           inpaint_sketch, *images["inpaint_upload"]},
                               lambda data: init_image_and_mask(data[mode], data, images)[0])
            controls.fields["resize_mode"] = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index",
                                                      label="Resize mode", elem_id="resize_mode")
            with gr.Group(visible=False) as inpaint_options:
                controls.fields["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                with gr.Row():
                    controls.fields["inpainting_mask_invert"] = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], type="index",
                                                                         label="Mask mode", elem_id="img2img_mask_mode")
                    controls.fields["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT), value="original", type="index",
                                                                  label="Masked content", elem_id="img2img_inpainting_fill")
                with gr.Row():
                    controls.fields["inpaint_full_res"] = gr.Radio(list(INPAINT_AREAS), value=INPAINT_AREAS[0], type="index",
                                                                   label="Inpaint area", elem_id="img2img_inpaint_full_res")
                    controls.fields["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4,
                                                                            label="Only masked padding, pixels",
                                                                            elem_id="img2img_inpaint_full_res_padding")
            images["inpaint_sketch"] = (inpaint_sketch, mask_alpha, controls.fields["mask_blur"])
            sampler_controls(controls, "img2img")
            controls.fields["tiling"] = gr.Checkbox(False, label="Tiling", elem_id="img2img_tiling")
            size_batch_cfg_controls(controls, "img2img")
            controls.fields["denoising_strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                                              elem_id="img2img_denoising_strength")
            seeds_holder = gr.State(())
            seed_controls(controls, "img2img", seeds_holder)
            scripts = script_ui(state, "img2img")  # after the core controls: scripts may look them up
            paste_into(controls, state, scripts)
        with gr.Column(scale=1, elem_id="img2img_results"):
            panel = output_panel("img2img", seeds_holder)

    for index, tab in enumerate(tabs):
        tab.select(mode_selected(index), None, [mode, inpaint_options])

    image_inputs = {mode, images["img2img"], images["sketch"], images["inpaint"], *images["inpaint_sketch"],
                    *images["inpaint_upload"]}

    def make_params(state: SharedState, data: dict) -> Img2ImgParams:
        image, mask = init_image_and_mask(data[mode], data, images)
        if image is None:
            raise ParamsError(f"put an image into the {MODES[data[mode]][0]} tab first")
        values = numeric_params(controls.values(data))
        values["inpaint_full_res"] = bool(values["inpaint_full_res"])
        return Img2ImgParams(**values, init_images=[image], mask=mask)

    wire_generation(state, sessions, "img2img", "img2img", buttons, controls, panel, make_params, image_inputs,
                    scripts=scripts)
    return Img2ImgTab(controls, panel, buttons.save_style, mode, mode_tabs, images, inpaint_options)


def wire_send_to(source: GenerationTab, target: Img2ImgTab, tabs: gr.Tabs) -> None:
    """The source gallery's "Send to img2img" and "Send to inpaint": the selected image and
    its parameters go to the img2img tab, in that mode."""
    panel: OutputPanel = source.panel
    outputs = [tabs, target.mode_tabs, target.mode, target.inpaint_options, target.images["img2img"],
               target.images["inpaint"], *target.controls.paste_targets()]

    def send(mode_id: str):
        def handler(result: dict, index: int):
            images, texts = result.get("images") or [], result.get("infotexts") or []
            if not images:
                return {}
            index = index if index < len(images) else 0
            return send_image(target, tabs, mode_id, images[index], texts[index] if index < len(texts) else "")
        return handler

    panel.send_img2img.click(send("img2img"), [panel.result, panel.selected], outputs)
    panel.send_inpaint.click(send("inpaint"), [panel.result, panel.selected], outputs)


def send_image(target: Img2ImgTab, tabs: gr.Tabs, mode_id: str, image: Image.Image, infotext: str) -> dict:
    """{component: update} that shows `image` in the img2img tab's `mode_id` mode with the infotext's values."""
    index = [m[1] for m in MODES].index(mode_id)
    updates = pasted_values(infotext, target.controls)
    updates.update({
        tabs: gr.Tabs(selected="img2img"),
        target.mode_tabs: gr.Tabs(selected=mode_id),
        target.mode: index,
        target.inpaint_options: gr.update(visible=mode_id.startswith("inpaint")),
    })
    if mode_id == "inpaint":
        updates[target.images["inpaint"]] = {"background": image, "layers": [], "composite": image}
    else:
        updates[target.images["img2img"]] = image
    return updates
