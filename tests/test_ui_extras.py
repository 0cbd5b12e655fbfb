"""The Extras tab in a real browser: upload an image, pick a model upscaler from models/ESRGAN, run one job."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ui_helpers import expect, open_page, serve_ui  # noqa: I001 (skips the module without Chromium)
from postprocessing_models import tiny_esrgan
from webui.postprocessing.model_upscalers import refresh_model_upscalers


@pytest.mark.slow
def test_extras_tab_upscales_with_a_model_file(tmp_path):
    tiny_esrgan(tmp_path / "models" / "ESRGAN" / "4x-Tiny.pth")
    refresh_model_upscalers(tmp_path / "models")  # what create_app does at start
    source = tmp_path / "source.png"
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", "a red fox\nSteps: 20, Seed: 7")  # a generated image's PNG info
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(source, pnginfo=chunks)
    try:
        with serve_ui(tmp_path, tiny_model=False) as (url, state, data), open_page(url) as page:
            page.get_by_role("tab", name="Extras").click()
            page.locator("#extras_image input[type=file]").set_input_files(str(source))
            chooser = page.locator("#extras_upscaler_1 input")
            chooser.click()
            page.get_by_role("option", name="4x-Tiny").click()
            expect(chooser).to_have_value("4x-Tiny")
            page.locator("#extras_generate").click()
            expect(page.locator("#html_info_extras")).to_contain_text("Postprocess upscaler: 4x-Tiny")
            expect(page.locator("#html_info_extras")).to_contain_text("Steps: 20, Seed: 7")  # the source's, kept
            expect(page.locator("#extras_gallery img").first).to_be_visible()
            saved = sorted((data / "outputs" / "extras-images").glob("*.png"))
            assert len(saved) == 1
            with Image.open(saved[0]) as result:
                assert result.size == (96, 64)
                assert "Postprocess upscale by: 4" in result.info["postprocessing"]
                assert result.info["parameters"] == "a red fox\nSteps: 20, Seed: 7"
    finally:
        refresh_model_upscalers(tmp_path / "none")
