"""A1111's `modules.ui_common`: refresh buttons and small HTML helpers."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from PIL import Image

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


def _gallery_image(item):
    """A PIL image from one gallery entry: an image, a (image, caption) pair, a dict Gradio sends, a file path,
    a data: URL or bare base64."""
    if isinstance(item, (tuple, list)):
        item = item[0] if item else None
    if isinstance(item, dict):
        item = item.get("image") or item.get("url") or item.get("path") or item.get("name")
        if isinstance(item, dict):
            item = item.get("path") or item.get("url")
    if item is None or isinstance(item, Image.Image):
        return item
    if isinstance(item, Path) or Path(str(item)).is_file():
        return Image.open(item)
    text = str(item)
    if text.startswith("data:"):
        text = text.split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(text)))


LOG_CSV_HEADER = ["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
                  "sd_model_name", "sd_model_hash"]


def save_files(js_data, images, do_make_zip, index):
    """A1111's Save / Zip buttons under a gallery: the images (all of them, or only the one at `index` with the
    `save_selected_only` setting) go into `opts.outdir_save` with their infotext, a row per save is added to its
    `log.csv`, and with `do_make_zip` a zip of them is written there too. `js_data` is the generation's JSON
    (`infotexts`, `index_of_first_image`, `width`, ...). Returns (an update of a File component listing the
    files, an HTML message)."""
    from . import images as compat_images
    from .infotext_utils import parse_generation_parameters
    from .shared import opts

    data = json.loads(js_data) if isinstance(js_data, str) else dict(js_data or {})
    infotexts = list(data.get("infotexts") or [])
    first_image = int(data.get("index_of_first_image", 0) or 0)
    p = SimpleNamespace(**data)
    images = list(images or [])
    start = 0
    if index is not None and index > -1 and opts.save_selected_only and index >= first_image and index < len(images):
        images, start = [images[index]], index
    folder = Path(opts.outdir_save)
    folder.mkdir(parents=True, exist_ok=True)
    extension = opts.samples_format or "png"
    saved, names = [], []
    log = folder / "log.csv"
    new_log = not log.exists() or log.stat().st_size == 0
    with open(log, "a", encoding="utf8", newline="") as file:
        writer = csv.writer(file)
        if new_log:
            writer.writerow(LOG_CSV_HEADER)
        for position, item in enumerate(images, start):
            image = _gallery_image(item)
            if image is None:
                continue
            infotext = infotexts[position] if position < len(infotexts) else ""
            params = parse_generation_parameters(infotext or "", [])
            p.batch_index = position - 1
            path, txt = compat_images.save_image(image, str(folder), "", seed=params.get("Seed"), prompt=params.get("Prompt"),
                                                 extension=extension, info=infotext or None, grid=position < first_image, p=p,
                                                 save_to_dirs=bool(opts.use_save_to_dirs_for_ui))
            saved.append(path)
            names.append(Path(path).name)
            if txt:
                saved.append(txt)
                names.append(Path(txt).name)
        if names:
            params = parse_generation_parameters(infotexts[start] if start < len(infotexts) else "", [])
            writer.writerow([params.get("Prompt", ""), params.get("Seed", ""), data.get("width", ""), data.get("height", ""),
                             data.get("sampler_name", ""), data.get("cfg_scale", ""), data.get("steps", ""), names[0],
                             params.get("Negative prompt", ""), data.get("sd_model_name", ""), data.get("sd_model_hash", "")])
    if do_make_zip and saved:
        archive = folder / f"images_{time.strftime('%Y%m%d-%H%M%S')}.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            for path in saved:
                zipped.write(path, Path(path).name)
        saved.insert(0, str(archive))
    message = f"Saved: {names[0]}" if names else "Nothing to save"
    return gr.update(value=saved or None, visible=True), plaintext_to_html(message)


__getattr__ = compat.report_missing_names(__name__)
