"""Extension scripts in the page (headless Chromium): an always-on script's controls in the
txt2img tab, a selectable script in the "Script" dropdown, both taking part in a generation,
infotext pasted into a script's fields, the built-in X/Y/Z plot's controls, a tab from
on_ui_tabs written in Gradio 3 style, a setting from on_ui_settings, and before/after_component
seeing the core widgets."""

import json
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from checkpoint_files import write_diffusers_folder  # noqa: E402
from extension_files import write  # noqa: E402
from live_server import LiveServer  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402
from webui.app import create_app, load_flags  # noqa: E402
from webui.extensions.loader import start_extensions  # noqa: E402
from webui.jobs import JobQueue  # noqa: E402
from webui.state import SharedState  # noqa: E402

pytestmark = pytest.mark.slow  # see pyproject.toml
TIMEOUT_MS = int(os.environ.get("UI_TEST_TIMEOUT_MS", "120000"))

SCRIPT = '''\
import gradio as gr
from modules import processing, script_callbacks, scripts, shared


class Suffix(scripts.Script):
    """Always on: adds a word to every prompt when ticked; notes the core widgets it saw."""

    def __init__(self):
        self.seen = {}
        self.on_after_component(lambda on: self.seen.__setitem__("generate", on.component), elem_id="txt2img_generate")

    def title(self):
        return "Prompt suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Prompt suffix", open=True):
            enabled = gr.Checkbox(label="Add the suffix", value=False, elem_id=self.elem_id("enabled"))
            suffix = gr.Textbox(label="Suffix", value=shared.opts.suffix_default, elem_id=self.elem_id("suffix"))
        self.infotext_fields = [(suffix, "Suffix")]  # pasting infotext fills it
        return [enabled, suffix]

    def after_component(self, component, **kwargs):
        if kwargs.get("elem_id") in ("txt2img_width", "txt2img_prompt"):
            self.seen[kwargs["elem_id"]] = component

    def process(self, p, enabled, suffix):
        if enabled:
            p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
            p.extra_generation_params["Suffix"] = suffix


class Shout(scripts.Script):
    """Selectable: shouts a word at the end of the prompt."""

    def title(self):
        return "Shout"

    def ui(self, is_img2img):
        return [gr.Textbox(label="Shout word", elem_id=self.elem_id("word"))]

    def run(self, p, word):
        p.prompt = f"{p.prompt} {word.upper()}"
        return processing.process_images(p)


def echo_tab():
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Box():  # Gradio 3 names and arguments
            text = gr.Textbox(label="Echo in", elem_id="echo_in").style(container=True)
            out = gr.Textbox(label="Echo out", elem_id="echo_out")
            with gr.Row(variant="compact"):
                go = gr.Button("Echo", elem_id="echo_go", variant="tool")
                clear = gr.Button("Clear", elem_id="echo_clear")
        go.click(fn=lambda value: value[::-1], inputs=[text], outputs=[out], _js="(value) => value.trim()")
        clear.click(fn=lambda: gr.Textbox.update(value="cleared"), inputs=[], outputs=[out])
    return [(tab, "Echo tab", "echo")]


def settings():
    section = ("suffix", "Prompt suffix")
    shared.opts.add_option("suffix_default", shared.OptionInfo("grain", "Default suffix", section=section))
    shared.opts.add_option("suffix_strength", shared.OptionInfo(
        3, "Suffix strength", gr.Slider, {"minimum": 0, "maximum": 10, "step": 1}, section=section))


def pasted(infotext, params):
    if "Suffix" in params:
        params["Suffix"] = params["Suffix"].upper()


script_callbacks.on_infotext_pasted(pasted)
script_callbacks.on_ui_tabs(echo_tab)
script_callbacks.on_ui_settings(settings)
SEEN = []  # (phase, elem_id) of every component the page creates
script_callbacks.on_before_component(lambda component, **kwargs: SEEN.append(("before", kwargs.get("elem_id"))))
script_callbacks.on_after_component(lambda component, **kwargs: SEEN.append(("after", component.elem_id)))
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    data = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "tiny")
    write(data / "extensions" / "suffix", {"scripts/suffix.py": SCRIPT})
    flags, extensions = load_flags(["--data-dir", str(data), "--use-cpu", "all"])
    state = SharedState.create(flags)
    state.queue = JobQueue(state)
    state.queue.start()
    start_extensions(state, extensions)
    app = create_app(state)
    with LiveServer(app) as live:
        yield f"{live.url}/", state, data
    state.queue.stop()


def set_slider(page, selector: str, value: int) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def test_scripts_tabs_and_settings_in_the_page(server):
    url, state, data = server
    suffix = state.runners["txt2img"].find("Prompt suffix")
    assert {"txt2img_width", "txt2img_prompt", "generate"} <= set(suffix.seen)  # core widgets came first
    assert suffix.seen["txt2img_width"].elem_id == "txt2img_width"
    seen = type(suffix).process.__globals__["SEEN"]  # the global callbacks hear of every component
    for elem_id in ("txt2img_prompt", "img2img_prompt", "setting_suffix_strength", "echo_in"):
        assert ("before", elem_id) in seen and ("after", elem_id) in seen, elem_id

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        tab = page.locator("#tab_txt2img")
        tab.locator("#txt2img_prompt textarea").wait_for()

        # The always-on script's controls, in the settings column, with the setting's value.
        container = tab.locator("#txt2img_script_container")
        expect(container.locator("#script_txt2img_prompt_suffix_enabled")).to_be_visible()
        expect(container.locator("#script_txt2img_prompt_suffix_suffix textarea")).to_have_value("grain")

        # The selectable script's controls show only once it is chosen.
        word = container.locator("#script_txt2img_shout_word")
        expect(word).to_be_hidden()
        dropdown = container.locator("#script_list input")
        dropdown.click()
        page.get_by_role("option", name="Shout", exact=True).click()
        expect(word).to_be_visible()

        # Generating runs both: the selected script's run() and the always-on script's process().
        tab.locator("#txt2img_prompt textarea").fill("a fox")
        word.locator("textarea").fill("loud")
        container.locator("#script_txt2img_prompt_suffix_suffix textarea").fill("grainy")
        container.locator("#script_txt2img_prompt_suffix_enabled input").check()
        set_slider(tab, "#txt2img_steps", 1)
        set_slider(tab, "#txt2img_width", 64)
        set_slider(tab, "#txt2img_height", 64)
        tab.locator("#txt2img_generate").click()
        tab.locator("#html_info_txt2img .infotext, #txt2img_progress .error").first.wait_for()
        assert tab.locator("#txt2img_progress .error").count() == 0, tab.locator("#txt2img_progress").inner_text()
        expect(tab.locator("#html_info_txt2img")).to_contain_text("a fox LOUD, grainy")
        expect(tab.locator("#html_info_txt2img")).to_contain_text("Suffix: grainy")

        # Sending the image to img2img pastes its infotext there, into the script's infotext_fields
        # too, after the on_infotext_pasted callback had its say.
        tab.locator("#txt2img_send_to_img2img").click()
        pasted = page.locator("#tab_img2img #script_img2img_prompt_suffix_suffix textarea")
        expect(pasted).to_have_value("GRAINY")
        page.get_by_role("tab", name="txt2img").click()

        # The built-in X/Y/Z plot: a sampler axis offers the samplers, its button fills them in.
        dropdown.click()
        page.get_by_role("option", name="X/Y/Z plot", exact=True).click()
        expect(word).to_be_hidden()
        container.locator("[id$='_x_type'] input").click()
        page.get_by_role("option", name="Sampler", exact=True).click()
        container.locator("[id$='_x_fill']").click()
        expect(container.locator("[id$='_x_values_dropdown']")).to_contain_text("Euler a")

        # The extension's own tab, written with Gradio 3's names (gr.Box, .style, _js, .update).
        page.get_by_role("tab", name="Echo tab").click()
        echo = page.locator("#tab_echo")
        echo.locator("#echo_in textarea").fill("  abc  ")
        echo.locator("#echo_go").click()
        expect(echo.locator("#echo_out textarea")).to_have_value("cba")
        echo.locator("#echo_clear").click()
        expect(echo.locator("#echo_out textarea")).to_have_value("cleared")

        # The extension's settings, in their section; applying saves them like the built-in ones.
        page.get_by_role("tab", name="Settings").click()
        section = page.locator("#settings_suffix")
        expect(section).to_contain_text("Prompt suffix")
        set_slider(section, "#setting_suffix_strength", 7)
        page.locator("#settings_submit").click()
        expect(page.locator("#settings_result")).to_contain_text("Suffix strength")
        assert state.options["suffix_strength"] == 7
        assert json.loads((data / "config.json").read_text())["suffix_strength"] == 7
        assert not errors, errors
        browser.close()
