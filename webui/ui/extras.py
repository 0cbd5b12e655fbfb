"""The Extras tab: upscale and restore faces of one image, a batch of uploaded images, or a folder's images.
A thin layer over webui/postprocessing (the same pipeline as /sdapi/v1/extra-single-image); results are saved
to the settings' folder for extras (outputs/extras-images unless changed; or the batch's output folder) with
their PNG info, and shown."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr
from PIL import Image, UnidentifiedImageError

from ..generation.images import save_image
from ..generation.upscalers import LATENT_UPSCALE_MODES, upscaler_names
from ..postprocessing.extras import ExtrasError, ExtrasParams, run_extras
from ..postprocessing.face_restoration import FaceRestorationUnavailable
from ..postprocessing.model_upscalers import missing_upscaler_notes
from ..postprocessing.networks import ModelFileError
from ..state import SharedState

log = logging.getLogger(__name__)
MODES = ("Single Image", "Batch Process", "Batch from Directory")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _sources(state: SharedState, mode: str, image, files, input_dir: str) -> list[tuple[str, Image.Image]]:
    if mode == MODES[0]:
        return [("image", image)] if image is not None else []
    if mode == MODES[1]:
        return [(Path(f).stem, Image.open(f)) for f in (files or [])]
    if state.flags.hide_ui_dir_config:
        raise ExtrasError("Batch from Directory is off on this server (--hide-ui-dir-config)")
    folder = Path(input_dir or "")
    if not input_dir or not folder.is_dir():
        raise ExtrasError(f"Input directory: {input_dir!r} is not a folder")
    return [(p.stem, Image.open(p)) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def run(state: SharedState, mode: str, image, files, input_dir: str, output_dir: str, show_results: bool,
        resize_tab: str, factor: float, width: int, height: int, crop: bool, upscaler_1: str, upscaler_2: str,
        upscaler_2_visibility: float, gfpgan_visibility: float, codeformer_visibility: float,
        codeformer_weight: float):
    """(images to show, HTML info) for the tab's controls; a problem is shown, never raised."""
    params = ExtrasParams(
        resize_mode=1 if resize_tab == "to" else 0, upscaling_resize=factor, upscaling_resize_w=int(width),
        upscaling_resize_h=int(height), upscaling_crop=crop, upscaler_1=upscaler_1, upscaler_2=upscaler_2,
        extras_upscaler_2_visibility=upscaler_2_visibility, gfpgan_visibility=gfpgan_visibility,
        codeformer_visibility=codeformer_visibility, codeformer_weight=codeformer_weight)
    outdir = state.output_folder("extras")
    if mode == MODES[2] and output_dir:
        outdir = Path(output_dir)
    shown, infos = [], []
    try:
        sources = _sources(state, mode, image, files, input_dir)
        if not sources:
            raise ExtrasError("no image given")
        for name, source in sources:
            result = run_extras(params, source, state.flags.models_dir, str(getattr(state.models.slot, "device", "cpu")))
            chunks = result.pnginfo(source)
            shown_info = "\n".join(chunks[key] for key in ("parameters", "postprocessing") if chunks.get(key))
            save_image(result.image, outdir, seed=None, prompt=None, infotext=chunks.pop("parameters", None),
                       pattern="", existing_pnginfo=chunks)
            shown.append(result.image)
            infos.append(shown_info)  # the result's PNG info: the source's parameters, then what was done
    except (ExtrasError, FaceRestorationUnavailable, ModelFileError, OSError, UnidentifiedImageError) as error:
        return shown if show_results else [], f'<div class="error">{html.escape(str(error))}</div>'
    text = "".join(f"<p>{html.escape(info).replace(chr(10), '<br>')}</p>" for info in dict.fromkeys(infos) if info)
    return shown if show_results else [], text or "<p>Nothing to do: choose an upscaler or a face restorer.</p>"


def build(state: SharedState) -> None:
    upscalers = [name for name in upscaler_names() if name not in LATENT_UPSCALE_MODES]
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            mode = gr.State(MODES[0])
            with gr.Tabs(elem_id="mode_extras"):
                with gr.Tab(MODES[0], elem_id="extras_single_tab") as single_tab:
                    image = gr.Image(label="Source", type="pil", sources=["upload", "clipboard"], elem_id="extras_image",
                                     height=320)
                with gr.Tab(MODES[1], elem_id="extras_batch_process_tab") as batch_tab:
                    files = gr.File(label="Batch Process", file_count="multiple", type="filepath",
                                    elem_id="extras_image_batch")
                with gr.Tab(MODES[2], elem_id="extras_batch_directory_tab") as folder_tab:
                    hidden = state.flags.hide_ui_dir_config
                    input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir", interactive=not hidden)
                    output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                            interactive=not hidden,
                                            placeholder="empty: the settings' folder for extras")
                    show_results = gr.Checkbox(label="Show result images", value=True, elem_id="extras_show_extras_results")
            for tab, name in ((single_tab, MODES[0]), (batch_tab, MODES[1]), (folder_tab, MODES[2])):
                tab.select(lambda n=name: n, None, mode)
            generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            resize_tab = gr.State("by")
            with gr.Tabs(elem_id="extras_resize_mode"):
                with gr.Tab("Scale by", elem_id="extras_scale_by_tab") as by_tab:
                    factor = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
                with gr.Tab("Scale to", elem_id="extras_scale_to_tab") as to_tab:
                    with gr.Row():
                        width = gr.Number(label="Width", value=512, precision=0, elem_id="extras_upscaling_resize_w")
                        height = gr.Number(label="Height", value=512, precision=0, elem_id="extras_upscaling_resize_h")
                        crop = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
            by_tab.select(lambda: "by", None, resize_tab)
            to_tab.select(lambda: "to", None, resize_tab)
            with gr.Row():
                upscaler_1 = gr.Dropdown(upscalers, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                upscaler_2 = gr.Dropdown(upscalers, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
                upscaler_2_visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                                  elem_id="extras_upscaler_2_visibility")
            if notes := missing_upscaler_notes():
                with gr.Accordion("More upscalers", open=False, elem_id="extras_missing_upscalers"):
                    gr.Markdown("\n".join(f"- {html.escape(note)}" for note in notes))
            gfpgan_visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="GFPGAN visibility",
                                          elem_id="extras_gfpgan_visibility")
            with gr.Row():
                codeformer_visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="CodeFormer visibility",
                                                  elem_id="extras_codeformer_visibility")
                codeformer_weight = gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                              label="CodeFormer weight (0 = maximum effect, 1 = minimum effect)",
                                              elem_id="extras_codeformer_weight")
        with gr.Column():
            gallery = gr.Gallery(label="Result", elem_id="extras_gallery", format="png", height=420)
            info = gr.HTML(elem_id="html_info_extras")
    generate.click(
        lambda *args: run(state, *args),
        [mode, image, files, input_dir, output_dir, show_results, resize_tab, factor, width, height, crop, upscaler_1,
         upscaler_2, upscaler_2_visibility, gfpgan_visibility, codeformer_visibility, codeformer_weight],
        [gallery, info])
