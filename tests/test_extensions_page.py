"""Extensions in headless Chromium: an extension's UI element, its CSS and its JS (through
A1111's page API: onUiLoaded, gradioApp, get_uiCurrentTab, opts, onUiTabChange), and the
Extensions tab listing it, installing another from a local git repository and disabling one."""

import json
import os
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from extension_files import (a1111_page_extension, broken_extensions, diagnosed_extension, good_extension,  # noqa: E402
                             gradio3_tab_extension, write)
from live_server import LiveServer  # noqa: E402
from ui_helpers import open_page  # noqa: E402
from webui.app import create_app, load_flags  # noqa: E402
from webui.extensions.loader import start_extensions  # noqa: E402
from webui.state import SharedState  # noqa: E402

pytestmark = pytest.mark.slow  # see pyproject.toml
TIMEOUT_MS = int(os.environ.get("UI_TEST_TIMEOUT_MS", "120000"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    data = tmp_path_factory.mktemp("data")
    good_extension(data / "extensions")
    broken_extensions(data / "extensions")
    a1111_page_extension(data / "extensions")
    flags, extensions = load_flags(["--data-dir", str(data), "--use-cpu", "all"])
    state = SharedState.create(flags)
    start_extensions(state, extensions)
    app = create_app(state)
    with LiveServer(app) as live:
        yield f"{live.url}/", state, data
    state.queue.stop()


def test_extension_ui_js_css_and_the_extensions_tab(server, tmp_path):
    url, state, data = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.locator("#txt2img_prompt textarea").wait_for()

        body = page.locator("body")
        expect(body).to_have_attribute("data-goodext", "loaded")  # onUiLoaded ran, after the UI was there
        expect(body).to_have_attribute("data-goodext-has-prompt", "true")  # gradioApp().getElementById
        expect(body).to_have_attribute("data-goodext-other-tabs", "true")  # every tab was built before onUiLoaded
        expect(body).to_have_attribute("data-goodext-tab", "txt2img")  # get_uiCurrentTab()
        expect(body).to_have_attribute("data-goodext-format", "png")  # window.opts, from the settings
        assert page.evaluate("document.body.dataset.broken") is None  # a disabled extension's JS is not loaded

        box = page.locator("#tab_txt2img #goodext_text")  # the always-on script's ui(), and the extension's style.css
        expect(box).to_be_attached()
        assert box.evaluate("el => getComputedStyle(el).outlineWidth") == "7px"

        page.get_by_role("tab", name="Extensions").click()
        expect(body).to_have_attribute("data-goodext-last-tab", "Extensions")  # onUiTabChange
        table = page.locator("#extensions_table")
        expect(table.locator("tr[data-extension=goodext]")).to_contain_text("https://example.com/goodext.git")
        expect(table.locator("tr[data-extension=goodext]")).to_contain_text("running")
        expect(table.locator("tr[data-extension=broken-syntax]")).to_contain_text("error, not loaded")
        expect(table.locator("tr[data-extension=raises]")).to_contain_text("boom at import")

        # Install another extension from a local git repository.
        source = write(tmp_path / "newext", {"scripts/new.py": "", "install.py": "print('new ext installing')\n"})
        for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *command], cwd=source,
                           check=True)
        page.get_by_role("tab", name="Install from URL").click()
        page.locator("#extension_install_url textarea, #extension_install_url input").first.fill(str(source))
        page.locator("#extension_install_button").click()
        expect(page.locator("#extension_install_result")).to_contain_text("Installed newext", timeout=TIMEOUT_MS)
        expect(page.locator("#extension_install_result")).to_contain_text("new ext installing")
        assert (data / "extensions" / "newext" / "scripts" / "new.py").is_file()

        # Disable the good extension and apply: saved in config.json (this server cannot restart itself).
        page.get_by_role("tab", name="Installed").click()
        expect(table.locator("tr[data-extension=newext]")).to_contain_text("loads after a restart")
        page.locator("#extensions_enabled").get_by_label("goodext", exact=True).uncheck()
        page.locator("#extensions_apply").click()
        expect(page.locator("#extensions_message")).to_contain_text("Restart the WebUI to apply")
        assert "goodext" in json.loads((data / "config.json").read_text())["disabled_extensions"]
        expect(table.locator("tr[data-extension=goodext]")).to_contain_text("disabled; still running until a restart")
        assert not errors, errors
        browser.close()


def test_extension_scripts_find_a1111s_page(server):
    # Waiting for DOMContentLoaded/load (already fired when Gradio inserts the scripts), A1111's globals,
    # a Gradio-3 selector and the width/height switch, as real extensions use them.
    url, state, data = server
    errors = []
    with open_page(url, errors=errors) as page:
        body = page.locator("body")
        expect(body).to_have_attribute("data-page-ready", "ran")
        expect(body).to_have_attribute("data-page-load", "ran")
        expect(body).to_have_attribute("data-page-titles", "1")
        expect(body).to_have_attribute("data-page-prompt", "textarea")
        expect(body).to_have_attribute("data-page-switch", "found")
        assert page.evaluate("window.webuiTargetSize.width") == 640
        for name, value in (("width", 64), ("height", 128)):
            box = page.locator(f"#txt2img_{name} input[type=number]")
            box.fill(str(value))
            box.press("Enter")
        page.locator("#txt2img_res_switch_btn").click()
        expect(page.locator("#txt2img_width input[type=number]")).to_have_value("128")
        expect(page.locator("#txt2img_height input[type=number]")).to_have_value("64")
        assert page.locator("#txt2img_res_switch_btn").get_attribute("aria-label") == "Swap width and height"
        assert not errors, errors


def test_what_an_extension_lacks_is_shown_for_it(tmp_path):
    # A missing setting and modules name (caught by the extension) and a page-script error: each is shown on the
    # extension's row in the Extensions tab, with the file and line.
    os.environ["HF_HUB_OFFLINE"] = "1"
    diagnosed_extension(tmp_path / "extensions")
    flags, extensions = load_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"])
    state = SharedState.create(flags)
    start_extensions(state, extensions)
    (ext,) = [ext for ext in state.extensions if ext.name == "halfworks"]
    assert ext.error is None
    assert "uses modules.shared.opts.halfworks_level_we_lack, which this WebUI does not provide " \
           "(scripts/half.py, line 4)" in ext.warnings
    assert any("modules.shared.helper_we_lack" in note and "line 7" in note for note in ext.warnings)
    with LiveServer(create_app(state)) as live, open_page(f"{live.url}/") as page:
        page.get_by_role("tab", name="Extensions").click()
        page.get_by_role("tab", name="Installed").click()
        row = page.locator("#extensions_table tr[data-extension=halfworks]")
        for _ in range(40):  # the page reports the error in the background; the table shows it once refreshed
            if any("page script failed" in note for note in ext.warnings):
                break
            page.wait_for_timeout(250)
        assert any(note.startswith("its page script failed: ") and note.endswith("(javascript/bad.js, line 2)")
                   for note in ext.warnings), ext.warnings
        page.get_by_role("tab", name="Install from URL").click()
        page.get_by_role("tab", name="Installed").click()
        expect(row).to_contain_text("halfworks_level_we_lack")
    state.queue.stop()


def test_gradio3_hidden_blocks_and_tabs_are_in_the_page(tmp_path):
    # As Gradio 3 drew them (images-browser relies on it): invisible components and rows are in the page, hidden,
    # even in tabs not opened yet, so page scripts read and click them; a block beside the tabs neither
    # doubles a tab button nor hangs the page; gr.update(visible=True) shows a hidden row; a closed accordion's
    # content is there too; showing a tab is a page update (onAfterUiUpdate).
    os.environ["HF_HUB_OFFLINE"] = "1"
    gradio3_tab_extension(tmp_path / "extensions")
    flags, extensions = load_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"])
    state = SharedState.create(flags)
    start_extensions(state, extensions)
    errors = []
    with LiveServer(create_app(state)) as live, open_page(f"{live.url}/", errors=errors) as page:
        body = page.locator("body")
        expect(body).to_have_attribute("data-gr3-bridge", "from python")
        expect(body).to_have_attribute("data-gr3-renew", "found")
        expect(body).to_have_attribute("data-gr3-tab-buttons", "2")
        expect(body).to_have_attribute("data-gr3-editors", "img2maskimg,inpaint_sketch,img_inpaint_base")
        expect(body).to_have_attribute("data-gr3-opts-editors", "5")  # filled opts: the whole page is there
        page.wait_for_timeout(1000)  # a quiet page: showing the tab below is then the only change
        page.get_by_role("tab", name="Gradio 3 habits").click()
        tabs = page.locator("#gr3_tabs")
        expect(tabs.get_by_role("tab")).to_have_count(2)
        expect(page.locator("#gr3_first_panel")).to_be_hidden()
        expect(page.locator("#gr3_first_renew")).to_be_hidden()
        expect(page.locator("#gr3_bridge")).to_be_hidden()
        tabs.get_by_role("tab", name="Second").click()
        expect(page.locator("#gr3_second_result textarea")).to_have_value("renewed second")  # the script's click
        expect(page.locator("#gr3_second_renew")).to_be_visible()  # the click's gr.update(visible=True)
        expect(page.locator("#gr3_first_panel")).to_be_hidden()
        # Opening the tab is a page update; the script then clicks a button in the closed accordion.
        expect(page.locator("#gr3_refreshed textarea")).to_have_value("refreshed by the page script")
        expect(page.locator("#gr3_refresh")).to_be_hidden()  # the accordion is closed ...
        page.locator("#gr3_actions").get_by_text("Actions").click()
        expect(page.locator("#gr3_refresh")).to_be_visible()  # ... and opens as usual
        assert not errors, errors
    state.queue.stop()
