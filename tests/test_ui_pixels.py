"""What the browser sends and gets back is what the backend sees and made: inpainting from the page leaves
every unmasked pixel exactly as it was, and an interrupted job shows the image as far as it got."""

import io

import numpy as np
import pytest
from PIL import Image

from ui_helpers import TIMEOUT_MS, expect, finished, open_page, serve_ui, set_slider

pytestmark = pytest.mark.slow  # see pyproject.toml


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_ui(tmp_path_factory.mktemp("data")) as served:
        yield served


@pytest.fixture(scope="module")
def page(server):
    with open_page(server[0]) as page:
        yield page


def pixels(source) -> np.ndarray:
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def paint_top_stroke(page, editor) -> None:
    """A short white stroke across the top fifth of the image (the editor drops strokes made before its
    layer exists, so wait for the layer, then for the stroke to show)."""
    expect(editor.get_by_text("Layer 1")).to_be_visible()
    canvas = editor.locator("canvas").first
    before = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
    for _ in range(20):
        box = canvas.bounding_box()
        side = min(box["width"], box["height"])  # the image is drawn square, centred in the canvas
        left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
        y = top + side * 0.2
        page.mouse.move(left + side * 0.4, y)
        page.mouse.down()
        for step in range(5):
            page.mouse.move(left + side * (0.4 + step * 0.05), y)
        page.mouse.up()
        after = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
        if (after != before).mean() > 0.005:
            return
        page.wait_for_timeout(250)
    raise AssertionError("the mask stroke never showed on the canvas")


def test_inpaint_from_the_page_keeps_unmasked_pixels_exactly(server, page):
    _, state, data = server
    page.locator("#txt2img_prompt textarea").fill("a red square")
    for name, value in (("steps", 2), ("width", 128), ("height", 128)):
        set_slider(page, f"txt2img_{name}", value)
    page.locator("#txt2img_seed input").fill("7")
    page.locator("#txt2img_generate").click()
    finished(page, "txt2img")
    (original,) = (data / "outputs" / "txt2img-images").rglob("*.png")
    # The gallery hands the browser the saved image itself, not a lossy copy.
    source = page.locator("#txt2img_gallery img").first.get_attribute("src")
    shown = page.request.get(source if source.startswith("http") else page.url.rstrip("/") + source)
    assert np.array_equal(pixels(shown.body()), pixels(original))

    # The way a user brings an older image back: PNG Info, then Send to inpaint.
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(original))
    expect(page.locator("#pnginfo_html")).to_contain_text("a red square")
    page.locator("#pnginfo_send_inpaint").click()
    editor = page.locator("#img2maskimg")
    expect(editor).to_be_visible()
    expect(page.locator("#img2img_width input[type=number]")).to_have_value("128")
    paint_top_stroke(page, editor)
    page.locator("#img2img_prompt textarea").fill("a blue square")
    page.locator("#img2img_generate").click()
    finished(page, "img2img")
    (inpainted,) = (data / "outputs" / "img2img-images").rglob("*.png")

    before, after = pixels(original), pixels(inpainted)
    assert after.shape == before.shape == (128, 128, 3)
    changed_rows = np.nonzero((after != before).any(axis=(1, 2)))[0]
    assert changed_rows.size, "the masked stroke was not repainted at all"
    # Far from the stroke (the bottom half), every pixel is the original's, exactly.
    assert np.array_equal(after[64:], before[64:]), f"rows changed: {changed_rows.tolist()}"
    assert changed_rows.max() < 64
    # The gallery hands the browser the saved image itself, not a lossy copy.
    source = page.locator("#img2img_gallery img").first.get_attribute("src")
    shown = page.request.get(source if source.startswith("http") else page.url.rstrip("/") + source)
    assert np.array_equal(pixels(shown.body()), after)


def test_interrupt_shows_the_image_as_far_as_it_got(server, page):
    _, state, data = server
    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_prompt textarea").fill("a slow square")
    # Long enough (several seconds) that the click lands mid-job even on a fast, quiet machine.
    for name, value in (("steps", 150), ("width", 256), ("height", 256)):
        set_slider(page, f"txt2img_{name}", value)
    saved_before = set((data / "outputs" / "txt2img-images").rglob("*.png"))
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_progress")).to_contain_text("step", timeout=TIMEOUT_MS)
    page.locator("#txt2img_interrupt").click()
    expect(page.locator("#txt2img_progress")).to_contain_text("Interrupted")
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()
    expect(page.locator("#html_info_txt2img")).to_contain_text("a slow square")
    (saved,) = set((data / "outputs" / "txt2img-images").rglob("*.png")) - saved_before
    assert Image.open(saved).size == (256, 256)
