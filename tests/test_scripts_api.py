"""Scripts over the REST API (real HTTP): script_name/script_args, alwayson_scripts, the script
listings, extension settings in /options, and clear 4xx answers for scripts a tab lacks."""

from __future__ import annotations

import base64
import io
import json
import os

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from script_helpers import load_extension, write_extension
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.flags import parse_flags
from webui.state import SharedState

SMALL = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 11, "sampler_name": "Euler"}

SCRIPTS = {
    "suffix.py": """
        import gradio as gr
        from modules import script_callbacks, scripts, shared

        class Suffix(scripts.Script):
            def title(self):
                return "Prompt Suffix"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                return [gr.Checkbox(value=False, label="Enabled"), gr.Textbox(value="red", label="Suffix")]

            def process(self, p, enabled, suffix):
                if enabled:
                    p.all_prompts = [f"{x}, {suffix}" for x in p.all_prompts]
                    p.extra_generation_params["Suffix"] = suffix
                    p.extra_generation_params["Api"] = p.is_api

        def settings():
            shared.opts.add_option("suffix_default", shared.OptionInfo("red", "Default suffix",
                                                                      section=("suffix", "Suffix")))

        script_callbacks.on_ui_settings(settings)
        script_callbacks.on_infotext_pasted(lambda text, params: params.setdefault("Suffix", "none"))
    """,
    "repeat.py": """
        import gradio as gr
        from modules import scripts
        from modules.processing import Processed, process_images

        class Repeat(scripts.Script):
            def title(self):
                return "Repeat"

            def ui(self, is_img2img):
                return [gr.Slider(minimum=1, maximum=5, step=1, value=1, label="Times"),
                        gr.Dropdown(choices=["same", "next"], value="next", label="Seeds", type="index")]

            def run(self, p, times, seeds):
                images, texts = [], []
                for i in range(int(times)):
                    p.seed = 11 + i * seeds
                    done = process_images(p)
                    images += done.images
                    texts += done.infotexts
                return Processed(p, images, 11, texts[0], infotexts=texts)
    """,
}


class Server:
    def __init__(self, state: SharedState):
        app = FastAPI()
        register_api(app, state)
        self.state = state
        self.live = LiveServer(app)
        self.url = self.live.url

    def close(self):
        self.live.stop()
        self.state.queue.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), root / "models" / "Stable-diffusion" / "tiny")
    flags = parse_flags(["--data-dir", str(root), "--use-cpu", "all", "--precision", "full", "--ckpt", "tiny", "--nowebui"])
    state = SharedState.create(flags)
    load_extension(state, write_extension(root / "extensions", "demoext", SCRIPTS))
    state.runners.clear()  # API only: the runners (and their default args) are built without a UI
    state.callbacks.run("ui_settings")
    srv = Server(state)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def infotexts(reply) -> list[str]:
    assert reply.status_code == 200, reply.text
    return json.loads(reply.json()["info"])["infotexts"]


def test_script_listings(http):
    assert http.get("/sdapi/v1/scripts").json() == {"txt2img": ["prompt suffix", "repeat"],
                                                    "img2img": ["prompt suffix", "repeat"]}
    info = http.get("/sdapi/v1/script-info").json()
    assert [(i["name"], i["is_alwayson"], i["is_img2img"]) for i in info] == [
        ("prompt suffix", True, False), ("repeat", False, False), ("prompt suffix", True, True), ("repeat", False, True)]
    times, seeds = info[1]["args"]
    assert times == {"label": "Times", "value": 1, "minimum": 1, "maximum": 5, "step": 1, "choices": None}
    assert seeds["label"] == "Seeds" and seeds["value"] == 1 and seeds["choices"] == ["same", "next"]


def test_alwayson_scripts_args_reach_the_script(http):
    plain = infotexts(http.post("/sdapi/v1/txt2img", json=SMALL))[0]
    assert plain.startswith("a cat\n") and "Suffix" not in plain  # off by default
    reply = http.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": {"prompt suffix": {"args": [True, "blue"]}}})
    text = infotexts(reply)[0]
    assert text.startswith("a cat, blue\n") and "Suffix: blue" in text and "Api: True" in text
    assert json.loads(reply.json()["info"])["all_prompts"] == ["a cat, blue"]
    image = Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0])))
    assert image.info["parameters"] == text


def test_script_name_runs_the_selected_script(http):
    reply = http.post("/sdapi/v1/txt2img", json={**SMALL, "script_name": "Repeat", "script_args": [3, 1]})
    texts = infotexts(reply)
    assert len(reply.json()["images"]) == 3
    assert ["Seed: 11," in texts[0], "Seed: 12," in texts[1], "Seed: 13," in texts[2]] == [True] * 3
    both = http.post("/sdapi/v1/img2img", json={
        **SMALL, "init_images": [base64.b64encode(_png()).decode()], "script_name": "repeat", "script_args": [2],
        "alwayson_scripts": {"Prompt Suffix": {"args": [True]}}})
    texts = infotexts(both)
    assert len(texts) == 2 and all(t.startswith("a cat, red\n") for t in texts)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unknown_scripts_are_refused_clearly(http):
    reply = http.post("/sdapi/v1/txt2img", json={**SMALL, "script_name": "no such script"})
    assert reply.status_code == 422 and "no such script" in reply.json()["detail"] and "repeat" in reply.json()["detail"]
    reply = http.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": {"Repeat": {"args": []}}})
    assert reply.status_code == 422 and "always-on" in reply.json()["detail"]
    reply = http.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": {"prompt suffix": {"args": "x"}}})
    assert reply.status_code == 422


def test_extension_settings_in_options_and_infotext_pasted(http):
    assert http.get("/sdapi/v1/options").json()["suffix_default"] == "red"
    assert http.post("/sdapi/v1/options", json={"suffix_default": "green"}).status_code == 200
    assert http.get("/sdapi/v1/options").json()["suffix_default"] == "green"
    assert http.post("/sdapi/v1/options", json={"suffix_default": 5}).status_code == 400
    info = http.post("/sdapi/v1/png-info", json={"image": base64.b64encode(_png_with_text()).decode()}).json()
    assert info["parameters"]["Suffix"] == "none" and info["parameters"]["Steps"] == "3"


def _png_with_text() -> bytes:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a dog\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=text)
    return buffer.getvalue()


def test_process_images_outside_a_job_goes_through_the_queue(server):
    """An extension's own route may call process_images(p): it waits for a job like any client."""
    from webui import compat
    from webui.extensions.processing import StableDiffusionProcessingTxt2Img, process_images

    compat.bind(server.state)
    p = StableDiffusionProcessingTxt2Img(prompt="a fox", negative_prompt=None, steps=2, width=64, height=64, seed=21,
                                         sampler_name="Euler", batch_size=2, do_not_save_samples=True)
    processed = process_images(p)
    assert len(processed.images) == 2 and processed.all_seeds == [21, 22]
    assert processed.infotexts[1].startswith("a fox\n") and "Seed: 22" in processed.infotexts[1]
