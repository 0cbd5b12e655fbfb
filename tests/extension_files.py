"""Small A1111-format extensions written into temporary folders for the extension tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

GOOD_SCRIPT = '''\
import helper_pkg  # a package in the extension's own folder (on sys.path while scripts load)
from modules import script_callbacks, scripts, shared
import gradio as gr

BASEDIR = scripts.basedir()


class GoodScript(scripts.Script):
    def title(self):
        return "Good script"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Textbox(label="Good extension text", elem_id="goodext_text")]


def started(demo, app):
    @app.get("/goodext/hello")
    def hello():
        return {"value": helper_pkg.VALUE, "flag": shared.cmd_opts.goodext_flag, "basedir": BASEDIR,
                "has_demo": demo is not None}


script_callbacks.on_app_started(started)
'''

PRELOAD = """\
import os
from modules.paths import models_path  # works before the flags are parsed (A1111's dreambooth does this)


def preload(parser):
    parser.add_argument("--goodext-flag", default="unset")
    parser.add_argument("--goodext-dir", default=os.path.join(models_path, "goodext"))
"""

GOOD_JS = '''\
onUiLoaded(function () {
    document.body.dataset.goodext = "loaded";
    document.body.dataset.goodextTab = get_uiCurrentTab().innerText.trim();
    document.body.dataset.goodextHasPrompt = String(!!gradioApp().getElementById("txt2img_prompt"));
    // Other tabs' elements are there too, as on A1111's page.
    document.body.dataset.goodextOtherTabs = String(!!document.querySelector("#img2img_prompt textarea")
        && !!document.querySelector("#img2maskimg") && !!document.querySelector("#pnginfo_image"));
});
onOptionsAvailable(function () { document.body.dataset.goodextFormat = opts.samples_format; });
onUiTabChange(function () { document.body.dataset.goodextLastTab = get_uiCurrentTab().innerText.trim(); });
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def good_extension(extensions: Path, name: str = "goodext") -> Path:
    """Preload flag, a script with an always-on UI and an app_started route, JS, CSS; a git clone."""
    path = write(extensions / name, {
        "preload.py": PRELOAD,
        "helper_pkg/__init__.py": 'VALUE = "from the extension folder"\n',
        "scripts/good.py": GOOD_SCRIPT,
        "javascript/good.js": GOOD_JS,
        "style.css": "#goodext_text { outline: 7px solid rgb(1, 2, 3); }\n",
    })
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://example.com/goodext.git"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=path, check=True)
    return path


def broken_extensions(extensions: Path) -> None:
    """One with a syntax error (after a file that registered a callback), one raising on import."""
    write(extensions / "broken-syntax", {
        "scripts/a_fine.py": ("from modules import script_callbacks\n"
                              "script_callbacks.on_app_started(lambda demo, app: setattr(app.state, 'broken', 1))\n"),
        "scripts/b_bad.py": "def broken(:\n",
        "javascript/broken.js": "document.body.dataset.broken = 'ran';\n",
    })
    write(extensions / "raises", {"scripts/r.py": "raise RuntimeError('boom at import')\n"})


# Page habits of A1111 extensions: code that waits for DOMContentLoaded or the window's load event,
# extends A1111's `titles`, calls `dimensionChange`, finds the prompt with a Gradio-3 selector and
# looks for the width/height switch by A1111's id.
A1111_PAGE_JS = '''\
document.addEventListener("DOMContentLoaded", () => {
    document.body.dataset.pageReady = "ran";
    const wait = setInterval(() => {
        const prompt = gradioApp().querySelector("#txt2img_prompt > label > textarea");
        const swap = gradioApp().getElementById("txt2img_res_switch_btn");
        if (!prompt || !swap) return;
        clearInterval(wait);
        document.body.dataset.pagePrompt = prompt.tagName.toLowerCase();
        document.body.dataset.pageSwitch = "found";
    }, 100);
});
window.addEventListener("load", () => { document.body.dataset.pageLoad = "ran"; });
titles = {...titles, "Sampling steps": "How many times the image is improved"};
dimensionChange({target: {value: "640"}}, true, false);
document.body.dataset.pageTitles = String(Object.keys(titles).length);
'''


def a1111_page_extension(extensions: Path, name: str = "pagehabits") -> Path:
    return write(extensions / name, {"javascript/page.js": A1111_PAGE_JS})


def diagnosed_extension(extensions: Path, name: str = "halfworks") -> Path:
    """Asks for a setting and a modules name this WebUI lacks (and carries on), and has a page script that throws."""
    return write(extensions / name, {
        "scripts/half.py": ("from modules import shared\n\n"
                            "try:\n    LEVEL = shared.opts.halfworks_level_we_lack\nexcept AttributeError:\n    LEVEL = 1\n"
                            "HELPER = getattr(shared, 'helper_we_lack', None)\n"),
        "javascript/bad.js": "// throws once the page has loaded\nnull.boom();\n",
    })


GRADIO3_TAB_SCRIPT = '''\
import gradio as gr
from modules import script_callbacks


def renewed(name):
    return lambda: (f"renewed {name}", gr.update(visible=True))


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Tabs(elem_id="gr3_tabs"):
            gr.Textbox("from python", visible=False, elem_id="gr3_bridge")  # beside the tabs: Gradio 3 allowed it
            for name in ("first", "second"):
                with gr.Tab(name.title(), elem_id=f"gr3_{name}"):
                    result = gr.Textbox("", label=f"{name} result", elem_id=f"gr3_{name}_result")
                    with gr.Row(visible=False, elem_id=f"gr3_{name}_panel") as panel:
                        renew = gr.Button("Renew", elem_id=f"gr3_{name}_renew")
                    renew.click(renewed(name), None, [result, panel])
        with gr.Accordion("Actions", open=False, elem_id="gr3_actions"):  # Gradio 3 drew closed content too
            refresh = gr.Button("Refresh", elem_id="gr3_refresh")
        refreshed = gr.Textbox("", label="refreshed", elem_id="gr3_refreshed")
        refresh.click(lambda: "refreshed by the page script", None, refreshed)
    return [(tab, "Gradio 3 habits", "gr3habits")]


script_callbacks.on_ui_tabs(on_ui_tabs)
'''

# What images-browser's page script does when the page loads: read a hidden textbox, count the tab buttons,
# and click a hidden button in a tab not opened yet.
GRADIO3_TAB_JS = '''\
onUiLoaded(() => {
    const bridge = gradioApp().querySelector("#gr3_bridge textarea");
    document.body.dataset.gr3Bridge = bridge ? bridge.value : "missing";
    // A1111's img2img editors, which extensions look up (aspect-ratio-helper: #inpaint_sketch)
    document.body.dataset.gr3Editors = ["img2maskimg", "inpaint_sketch", "img_inpaint_base"].filter(
        (id) => gradioApp().getElementById(id)).join(",");
    document.body.dataset.gr3TabButtons = gradioApp().getElementById("gr3_tabs").querySelector("div").querySelectorAll("button").length;
    const renew = gradioApp().getElementById("gr3_second_renew");
    document.body.dataset.gr3Renew = renew ? "found" : "missing";
    if (renew) renew.click();
});
// aspect-ratio-helper's habit: watch the page until `opts` is filled, then look up every img2img editor.
new MutationObserver((_, observer) => {
    if (window.opts?.samples_format === undefined) return;
    observer.disconnect();
    document.body.dataset.gr3OptsEditors = ["img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch",
                                            "img_inpaint_base"].filter((id) => document.getElementById(id)).length;
}).observe(document, {childList: true, subtree: true});
// sd-dynamic-prompts' habit: on a page update, see which top-level tab shows (A1111's markup) and, the first
// time it is ours, click a button inside a closed accordion.
let gr3Refreshed = false;
onAfterUiUpdate(() => {
    const shown = gradioApp().querySelector('#tabs > .tabitem[id^=tab_]:not([style*="display: none"])');
    if (shown?.id === "tab_gr3habits" && !gr3Refreshed) {
        gr3Refreshed = true;
        gradioApp().querySelector("#gr3_refresh").click();
    }
});
'''


def gradio3_tab_extension(extensions: Path, name: str = "gr3habits") -> Path:
    """A tab in Gradio 3's habits: hidden components and rows its page script uses, a textbox beside the tabs."""
    return write(extensions / name, {"scripts/tab.py": GRADIO3_TAB_SCRIPT, "javascript/tab.js": GRADIO3_TAB_JS})
