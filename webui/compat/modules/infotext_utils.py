"""A1111's `modules.infotext_utils` (once `generation_parameters_copypaste`): reading infotext,
and the paste-button registry extensions add their fields to."""

from __future__ import annotations

import base64
import io

from PIL import Image

from webui import compat
from webui.generation.infotext import parse_infotext, quote, unquote  # noqa: F401

paste_fields: dict = {}  # tab -> {"init_img": ..., "fields": [(component, key)], ...}
registered_param_bindings: list = []


class ParamBinding:
    def __init__(self, paste_button, tabname, source_text_component=None, source_image_component=None,
                 source_tabname=None, override_settings_component=None, paste_field_names=None):
        self.paste_button, self.tabname = paste_button, tabname
        self.source_text_component, self.source_image_component = source_text_component, source_image_component
        self.source_tabname, self.override_settings_component = source_tabname, override_settings_component
        self.paste_field_names = paste_field_names or []


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None) -> dict:
    """The infotext's values by A1111's keys ("Prompt", "Steps", "Size-1", ...)."""
    return parse_infotext(x, skip_fields=skip_fields or ())


def add_paste_fields(tabname, init_img, fields, override_settings_component=None) -> None:
    paste_fields[tabname] = {"init_img": init_img, "fields": fields, "override_settings_component": override_settings_component}


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


def create_buttons(tabs_list) -> dict:
    import gradio as gr

    return {tab: gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab") for tab in tabs_list}


def bind_buttons(buttons, send_image, send_generate_info) -> None:
    for tabname, button in buttons.items():
        register_paste_params_button(ParamBinding(button, tabname, send_generate_info, send_image))


def image_from_url_text(filedata):
    """A PIL image from a data: URL (or the dict gradio sends); None when there is none."""
    if filedata is None:
        return None
    if isinstance(filedata, list):
        filedata = filedata[0] if filedata else None
    if isinstance(filedata, dict):
        filedata = filedata.get("url") or filedata.get("name") or filedata.get("path")
    if isinstance(filedata, Image.Image) or filedata is None:
        return filedata
    if filedata.startswith("data:image/png;base64,"):
        return Image.open(io.BytesIO(base64.b64decode(filedata.split(",", 1)[1])))
    return Image.open(filedata)


__getattr__ = compat.report_missing_names(__name__)
