"""A1111's `modules.extras`: the PNG Info reader extensions call (images-browser does)."""

from __future__ import annotations

import html

from webui import compat
from webui.generation.images import read_infotext


def run_pnginfo(image):
    """('', the generation parameters, an HTML listing of every text chunk), as A1111 returns them."""
    if image is None:
        return "", "", ""
    geninfo = read_infotext(image) or ""
    items = {key: value for key, value in (image.info or {}).items() if isinstance(value, str)}
    if geninfo and "parameters" not in items:
        items = {"parameters": geninfo, **items}
    info = "".join(f"<div><p><b>{html.escape(key)}</b></p><p>{html.escape(value)}</p></div>\n"
                   for key, value in items.items())
    return "", geninfo, info or "<div><p>Nothing found in the image.</p></div>"


__getattr__ = compat.report_missing_names(__name__)
