"""In the browser: img2img's "Interrogate CLIP" button fills the prompt (a notice when the models are missing), and
the Tiling checkbox reaches the job (its infotext says "Tiling: True")."""

import shutil

import pytest
from playwright.sync_api import expect

from interrogate_files import write_tiny_blip, write_tiny_clip
from ui_helpers import finished, open_page, serve_ui, set_slider
from webui.interrogate import Interrogator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_ui(tmp_path_factory.mktemp("ui-interrogate")) as served:
        url, state, data = served
        state.interrogator = Interrogator(data / "models", hf_cache=data / "no-hf-cache")  # this machine's cache unseen
        yield served


@pytest.fixture(scope="module")
def page(server):
    with open_page(server[0]) as page:
        yield page


def test_interrogate_clip_says_what_is_missing_then_fills_the_prompt(server, page, tmp_path):
    _, _, data = server
    image = tmp_path / "red.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    page.get_by_role("tab", name="img2img").first.click()
    prompt = page.locator("#img2img_prompt textarea")
    prompt.fill("keep me")
    page.locator("#img2img_image input[type=file]").set_input_files(str(image))
    expect(page.locator("#img2img_image img")).to_be_visible()

    page.locator("#interrogate").click()
    notice = page.locator(".toast-body").first
    expect(notice).to_contain_text("models/BLIP")
    expect(notice).to_contain_text("models/clip_interrogator")
    expect(notice).not_to_contain_text(str(data))  # server paths relative to the data folder
    expect(prompt).to_have_value("keep me")

    write_tiny_blip(data / "models" / "BLIP" / "tiny-blip")
    shutil.copytree(write_tiny_clip(tmp_path / "clip"), data / "models" / "clip_interrogator" / "tiny-clip")
    page.locator("#interrogate").click()
    expect(prompt).not_to_have_value("keep me")
    assert prompt.input_value().count(", ") == 6  # caption, artist, 3 flavors, medium, movement


def test_the_tiling_checkbox_reaches_the_job(page):
    page.get_by_role("tab", name="txt2img").first.click()
    page.locator("#txt2img_prompt textarea").fill("a seamless brick wall")
    for elem_id, value in (("txt2img_steps", 2), ("txt2img_width", 64), ("txt2img_height", 64)):
        set_slider(page, elem_id, value)
    page.locator("#txt2img_tiling input[type=checkbox]").check()
    page.locator("#txt2img_generate").click()
    finished(page, "txt2img")
    expect(page.locator("#html_info_txt2img")).to_contain_text("Tiling: True")
