"""The Gradio UI in headless Chromium: txt2img, send to inpaint, paint a mask, inpaint,
PNG Info, Settings. The server (FastAPI + the UI + the real job queue) runs in this process
on a tiny model, 64x64 and 2 steps."""

import json
import time

import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import save_file

from ui_helpers import TIMEOUT_MS, finished, open_page, serve_ui, set_slider, white_fraction
from webui.generation.images import read_infotext


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_ui(tmp_path_factory.mktemp("data")) as served:
        yield served


@pytest.fixture(scope="module")
def page(server):
    with open_page(server[0]) as page:
        yield page


def paint_mask(page, editor) -> None:
    """Drag the (white) mask brush across the middle of the image until the stroke shows.

    The editor drops strokes made before it has set up its layer, so wait for the layer
    and look at the canvas after each stroke rather than sleeping."""
    expect(editor.get_by_text("Layer 1")).to_be_visible()
    canvas = editor.locator("canvas").first
    before = white_fraction(canvas)
    for _ in range(20):
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 60, cy)
        page.mouse.down()
        for dx in range(-60, 61, 10):
            page.mouse.move(cx + dx, cy + dx / 4)
        page.mouse.up()
        if white_fraction(canvas) > before + 0.02:
            return
        page.wait_for_timeout(250)
    raise AssertionError("the mask stroke never showed on the canvas")


def test_txt2img_inpaint_and_png_info(server, page):
    _, state, data = server
    page.locator("#txt2img_prompt textarea").fill("a tiny red fox")
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    page.locator("#txt2img_generate").click()

    infotext = page.locator("#html_info_txt2img")
    finished(page, "txt2img")
    expect(infotext).to_contain_text("Steps: 2")
    expect(infotext).to_contain_text("a tiny red fox")
    expect(infotext).to_contain_text("Size: 64x64")
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()
    saved = list((data / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(saved) == 1 and "Steps: 2" in read_infotext(saved[0])

    # Send to inpaint: the img2img tab opens in Inpaint mode with the image and the parameters.
    page.locator("#txt2img_send_to_inpaint").click()
    editor = page.locator("#img2maskimg")
    expect(editor).to_be_visible()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a tiny red fox")
    expect(page.locator("#img2img_steps input[type=number]")).to_have_value("2")
    expect(page.locator("#img2img_width input[type=number]")).to_have_value("64")
    paint_mask(page, editor)

    page.locator("#img2img_generate").click()
    result = page.locator("#html_info_img2img")
    finished(page, "img2img")
    expect(result).to_contain_text("Mask blur: 4")
    expect(result).to_contain_text("Denoising strength: 0.75")
    inpainted = list((data / "outputs" / "img2img-images").rglob("*.png"))
    assert len(inpainted) == 1

    # PNG Info reads the inpainted image's parameters and sends them to txt2img.
    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_prompt textarea").fill("something else")
    set_slider(page, "txt2img_steps", 20)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(inpainted[0]))
    info = page.locator("#pnginfo_html")
    expect(info).to_contain_text("Mask blur: 4", timeout=TIMEOUT_MS)
    expect(info).to_contain_text("a tiny red fox")
    page.locator("#pnginfo_send_txt2img").click()
    expect(page.get_by_role("tab", name="txt2img")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a tiny red fox")
    expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("2")


def test_settings_apply_and_persist(server, page):
    _, state, data = server
    page.get_by_role("tab", name="Settings").click()
    expect(page.locator("#settings_submit")).to_be_visible()
    set_slider(page, "setting_CLIP_stop_at_last_layers", 2)
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).to_contain_text("Clip skip")
    assert state.options["CLIP_stop_at_last_layers"] == 2
    assert json.loads((data / "config.json").read_text())["CLIP_stop_at_last_layers"] == 2


def test_styles_save_pick_and_apply(server, page):
    _, state, data = server
    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_prompt textarea").fill("{prompt}, film grain")
    page.locator("#txt2img_neg_prompt textarea").fill("ugly")
    page.get_by_text("Save style").first.click()
    page.locator("#txt2img_style_name textarea, #txt2img_style_name input").first.fill("film")
    page.locator("#txt2img_style_save").click()
    expect_saved = data / "styles.csv"
    for _ in range(40):  # the save is a server round trip
        if expect_saved.exists() and "film" in expect_saved.read_text():
            break
        page.wait_for_timeout(250)
    assert expect_saved.read_text().splitlines()[0] == "name,prompt,negative_prompt"

    page.locator("#txt2img_prompt textarea").fill("a cat")
    page.locator("#txt2img_neg_prompt textarea").fill("")
    styles = page.locator("#txt2img_styles input")
    styles.click()
    styles.fill("film")
    page.get_by_role("option", name="film").click()
    styles.press("Escape")  # close the list
    # Generate sends the dropdown's value: wait until the pick shows as a chosen token, not for time.
    expect(page.locator("#txt2img_styles").get_by_text("film", exact=True)).to_be_visible()
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    page.locator("#txt2img_generate").click()
    finished(page, "txt2img")
    infotext = page.locator("#html_info_txt2img")
    expect(infotext).to_contain_text("a cat, film grain")
    expect(infotext).to_contain_text("Negative prompt: ugly")


def test_clicking_a_lora_card_adds_its_tag(server, page):
    _, state, data = server
    lora_dir = data / "models" / "Lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(1.0)}, lora_dir / "film_grain.safetensors",
              metadata={"ss_base_model_version": "sd_v1"})
    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_prompt textarea").fill("a cat")
    page.get_by_text("Extra networks").first.click()
    page.locator("#txt2img_extra_refresh").click()
    card = page.locator("#txt2img_lora_cards img").first
    expect(card).to_be_visible(timeout=TIMEOUT_MS)
    card.click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a cat <lora:film_grain:1>")
    # An embedding card adds the embedding's name; a checkpoint card chooses the checkpoint.
    (data / "embeddings").mkdir(exist_ok=True)
    save_file({"emb_params": torch.zeros(1, 32)}, data / "embeddings" / "grainy.safetensors")
    page.get_by_role("tab", name="Textual Inversion").click()
    page.locator("#txt2img_extra_refresh").click()
    embedding = page.locator("#txt2img_textual_inversion_cards img").first
    expect(embedding).to_be_visible(timeout=TIMEOUT_MS)
    embedding.click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a cat <lora:film_grain:1> grainy")
    page.get_by_role("tab", name="Checkpoints").click()
    page.locator("#txt2img_checkpoints_cards img").first.click()
    deadline = time.time() + 30
    while not state.options["sd_model_checkpoint"].startswith("tiny") and time.time() < deadline:
        time.sleep(0.2)
    assert state.options["sd_model_checkpoint"].startswith("tiny")


def test_vae_dropdown_sets_the_option(server, page):
    _, state, data = server
    vae = page.locator("#setting_sd_vae input")
    vae.click()
    page.get_by_role("option", name="None", exact=True).click()
    deadline = time.time() + 30
    while state.options["sd_vae"] != "None" and time.time() < deadline:
        time.sleep(0.2)
    assert state.options["sd_vae"] == "None"
    assert json.loads((data / "config.json").read_text())["sd_vae"] == "None"
