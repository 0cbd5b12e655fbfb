"""The page itself in headless Chromium: the output gallery shows whole images, controls stay
inside their boxes, icon buttons have names and no emoji, Interrupt/Skip appear only while a
job runs, and the extra networks panels (txt2img and img2img) say where files go."""

import re

import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import save_file

from ui_helpers import finished, open_page, serve_ui, set_slider

pytestmark = pytest.mark.slow  # a browser test (see pyproject.toml)

GENERATION_TABS = ("txt2img", "img2img")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_ui(tmp_path_factory.mktemp("data")) as served:
        yield served


@pytest.fixture(scope="module")
def page(server):
    with open_page(server[0]) as page:
        yield page


def shown_image_box(img) -> dict:
    """Where the browser paints the image inside its <img> box, after object-fit."""
    return img.evaluate("""(img) => {
        const box = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
        const ratio = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
        const cover = Math.max(box.width / img.naturalWidth, box.height / img.naturalHeight);
        const scale = fit === "contain" || fit === "scale-down" ? ratio : fit === "cover" ? cover : null;
        const width = scale === null ? box.width : img.naturalWidth * scale;
        const height = scale === null ? box.height : img.naturalHeight * scale;
        const left = box.left + (box.width - width) / 2, top = box.top + (box.height - height) / 2;
        return {left, top, right: left + width, bottom: top + height,
                box: {left: box.left, top: box.top, right: box.right, bottom: box.bottom}};
    }""")


def inside(inner: dict, outer: dict, slack: float = 1.0) -> bool:
    return (inner["left"] >= outer["left"] - slack and inner["top"] >= outer["top"] - slack
            and inner["right"] <= outer["right"] + slack and inner["bottom"] <= outer["bottom"] + slack)


def expect_whole_image_shown(page, tab: str) -> None:
    """The largest image in the tab's gallery is painted whole, inside the gallery."""
    gallery = page.locator(f"#{tab}_gallery")
    expect(gallery.locator("img").first).to_be_visible()
    frame = gallery.evaluate("e => { const r = e.getBoundingClientRect(); "
                             "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; }")
    shown = [shown_image_box(img) for img in gallery.locator("img").all() if img.is_visible()]
    largest = max(shown, key=lambda s: (s["right"] - s["left"]) * (s["bottom"] - s["top"]))
    assert inside(largest, largest["box"]), f"the image is cropped by its own box: {largest}"
    assert inside(largest, frame), f"the image is cut off by the gallery {frame}: {largest}"
    assert largest["bottom"] - largest["top"] > 100, f"the image is shown too small: {largest}"


def expect_idle(page, tab: str) -> None:
    expect(page.locator(f"#{tab}_generate")).to_be_visible()
    expect(page.locator(f"#{tab}_interrupt")).to_be_hidden()
    expect(page.locator(f"#{tab}_skip")).to_be_hidden()


def small_job(page, tab: str) -> None:
    set_slider(page, f"{tab}_steps", 1)
    set_slider(page, f"{tab}_width", 64)
    set_slider(page, f"{tab}_height", 64)


@pytest.mark.parametrize("tab", GENERATION_TABS)
def test_batch_sliders_stay_inside_their_column(server, page, tab):
    page.get_by_role("tab", name=tab).first.click()
    for slider in (f"{tab}_batch_count", f"{tab}_batch_size"):
        expect(page.locator(f"#{slider}")).to_be_visible()
        outside = page.locator(f"#{slider}").evaluate("""(block) => {
            const column = block.closest(".column").getBoundingClientRect();
            return [block, ...block.querySelectorAll("*")].filter((e) => {
                const r = e.getBoundingClientRect();
                return r.width && (r.left < column.left - 1 || r.right > column.right + 1);
            }).map((e) => e.tagName + "." + e.className);
        }""")
        assert outside == [], f"{slider}: {outside} stick out of the column"


ICON_BUTTONS = ["refresh_sd_model_checkpoint"] + [
    f"{tab}_{name}" for tab in GENERATION_TABS
    for name in ("random_seed", "reuse_seed", "random_subseed", "reuse_subseed", "extra_refresh")]


def no_emoji(text: str) -> bool:
    """No character that only an emoji font draws (pictographs, or the emoji presentation selector)."""
    return not any(ord(ch) >= 0x1F000 or ch == "\ufe0f" for ch in text)


def open_accordion(page, accordion: str, inner: str) -> None:
    """Open the accordion unless `inner` already shows: Gradio draws an accordion's contents when it opens."""
    if not page.locator(f"#{inner}").is_visible():
        page.locator(f"#{accordion} .label-wrap").first.click()
    expect(page.locator(f"#{inner}")).to_be_visible()


def test_icon_buttons_have_names_and_no_emoji(server, page):
    for tab in GENERATION_TABS:
        page.get_by_role("tab", name=tab).first.click()
        open_accordion(page, f"{tab}_subseed_accordion", f"{tab}_random_subseed")
        open_accordion(page, f"{tab}_extra_networks", f"{tab}_extra_refresh")
        for elem_id in ICON_BUTTONS:
            button = page.locator(f"#{elem_id}")
            if not button.is_visible():  # the other tab's
                continue
            expect(button).to_have_attribute("title", re.compile(r"\w"))
            expect(button).to_have_attribute("aria-label", re.compile(r"\w"))
            text = button.inner_text().strip()
            assert text and no_emoji(text), f"{elem_id} shows {text!r}"


def test_demo_notice_names_refresh_without_emoji(tmp_path):
    from webui.flags import parse_flags
    from webui.state import SharedState
    from webui.ui.common import demo_notice

    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "models")]))
    notice = demo_notice(state)
    assert "Refresh" in notice and no_emoji(notice)


def test_interrupt_and_skip_show_only_while_a_job_runs(server, page):
    page.get_by_role("tab", name="txt2img").click()
    expect_idle(page, "txt2img")
    page.locator("#txt2img_prompt textarea").fill("a long job")
    set_slider(page, "txt2img_steps", 150)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    set_slider(page, "txt2img_batch_count", 30)  # minutes of work if Interrupt did nothing
    page.locator("#txt2img_prompt textarea").press("Control+Enter")  # A1111's shortcut for Generate

    interrupt = page.locator("#txt2img_interrupt")
    expect(interrupt).to_be_visible()
    expect(page.locator("#txt2img_skip")).to_be_visible()
    expect(page.locator("#txt2img_generate")).to_be_hidden()
    for elem_id in ("txt2img_interrupt", "txt2img_skip"):
        widths = page.locator(f"#{elem_id}").evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert widths[0] <= widths[1], f"{elem_id}'s label overflows: {widths}"
    # Ctrl+Enter again while the job runs starts no second job.
    url, state, data = server
    page.locator("#txt2img_prompt textarea").press("Control+Enter")
    page.wait_for_timeout(1000)
    assert state.queue.pending() == []
    expect(interrupt).to_be_visible()
    interrupt.click()
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=60_000)
    expect_idle(page, "txt2img")
    set_slider(page, "txt2img_batch_count", 1)

    # A job refused before it starts (img2img without an image) leaves Generate where it was.
    page.get_by_role("tab", name="img2img").first.click()
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_progress .error")).to_contain_text("put an image")
    expect_idle(page, "img2img")


def test_extra_networks_say_where_files_go_in_both_tabs(server, page):
    _, state, data = server
    for tab in GENERATION_TABS:
        page.get_by_role("tab", name=tab).first.click()
        open_accordion(page, f"{tab}_extra_networks", f"{tab}_extra_refresh")
        panel = page.locator(f"#{tab}_extra_networks")
        panel.get_by_role("tab", name="Lora").click()
        expect(page.locator(f"#{tab}_lora_empty")).to_contain_text(str(data / "models" / "Lora"))
        expect(page.locator(f"#{tab}_lora_cards")).to_be_hidden()
        panel.get_by_role("tab", name="Textual Inversion").click()
        expect(page.locator(f"#{tab}_textual_inversion_empty")).to_contain_text(str(data / "embeddings"))
        # A checkpoint without a preview is a card of a card's size, its name on it.
        panel.get_by_role("tab", name="Checkpoints").click()
        cards = page.locator(f"#{tab}_checkpoints_cards")
        card = cards.locator("button:has(img)").first
        expect(card).to_be_visible()
        box = card.bounding_box()
        assert 60 <= box["width"] <= 320 and 60 <= box["height"] <= 320, box
        name = cards.get_by_text(re.compile(r"^tiny"))
        expect(name).to_be_visible()
        assert inside(name.evaluate("e => e.getBoundingClientRect().toJSON()"),
                      card.evaluate("e => e.getBoundingClientRect().toJSON()"))

    # img2img's own panel: a new LoRA file shows after Refresh, and its card adds the tag to img2img's prompt.
    lora_dir = data / "models" / "Lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(1.0)}, lora_dir / "inked.safetensors")
    page.locator("#img2img_prompt textarea").fill("a dog")
    page.locator("#img2img_extra_networks").get_by_role("tab", name="Lora").click()
    page.locator("#img2img_extra_refresh").click()
    expect(page.locator("#img2img_lora_empty")).to_be_hidden()
    page.locator("#img2img_lora_cards img").first.click()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a dog <lora:inked:1>")
    expect(page.locator("#txt2img_prompt textarea")).not_to_have_value(re.compile("inked"))


def test_gallery_shows_the_whole_image_in_txt2img_and_img2img(server, page):
    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_prompt textarea").fill("a red square")
    small_job(page, "txt2img")
    page.locator("#txt2img_generate").click()
    finished(page, "txt2img")
    expect(page.locator("#html_info_txt2img")).to_contain_text("a red square")  # not the interrupted job's
    expect_idle(page, "txt2img")
    expect_whole_image_shown(page, "txt2img")
    # Closed, the preview gives way to the grid, whose cells must not crop either.
    page.locator("#txt2img_gallery").get_by_role("button", name="Close").click()
    expect(page.locator("#txt2img_gallery").get_by_role("button", name="Close")).to_have_count(0)
    expect_whole_image_shown(page, "txt2img")

    page.locator("#txt2img_send_to_img2img").click()
    expect(page.locator("#img2img_image img")).to_be_visible()
    small_job(page, "img2img")
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_progress .error")).to_have_count(0)  # the earlier test's error is gone
    finished(page, "img2img")
    expect_idle(page, "img2img")
    expect_whole_image_shown(page, "img2img")
