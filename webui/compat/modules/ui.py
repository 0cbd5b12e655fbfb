"""A1111's `modules.ui`: the helpers extensions import from it."""

from webui import compat
from .ui_common import create_refresh_button, plaintext_to_html, refresh_symbol  # noqa: F401
from .ui_components import FormRow, ToolButton  # noqa: F401

switch_values_symbol = "\U000021c5"  # ⇅
detect_image_size_symbol = "\U0001f4d0"  # 📐
save_style_symbol = "\U0001f4be"  # 💾


def gr_show(visible=True):
    return {"visible": visible, "__type__": "update"}


__getattr__ = compat.report_missing_names(__name__)
