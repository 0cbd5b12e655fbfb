"""What the browser tests share: the UI served in this process on a tiny model with the real
job queue, headless Chromium on it, and small page helpers. Test modules wrap `serve_ui`
and `open_page` in their own fixtures (module scope), so each module gets a fresh data folder."""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from checkpoint_files import write_diffusers_folder  # noqa: E402
from live_server import LiveServer  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402
from webui.flags import parse_flags  # noqa: E402
from webui.jobs import JobQueue  # noqa: E402
from webui.state import SharedState  # noqa: E402
from webui.ui import build_ui  # noqa: E402

TIMEOUT_MS = int(os.environ.get("UI_TEST_TIMEOUT_MS", "120000"))
expect.set_options(timeout=TIMEOUT_MS)  # a loaded machine can take more than the default 5 s


@contextmanager
def serve_ui(data: Path, tiny_model: bool = True):
    """Yield (url, state, data) for the UI over a tiny SD1 model in `data`, or with no
    checkpoint of its own (`tiny_model=False`: the built-in demo model is offered)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if tiny_model:
        write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all"]))
    state.queue = JobQueue(state)
    state.queue.start()
    app = gr.mount_gradio_app(FastAPI(), build_ui(state), path="/")
    try:
        with LiveServer(app) as live:
            yield f"{live.url}/", state, data
    finally:
        state.queue.stop()


@contextmanager
def open_page(url: str, width: int = 1400, height: int = 1000, errors: list | None = None):
    """Yield a Playwright page with the UI loaded (the txt2img prompt is there); `errors` collects the
    page's uncaught script errors from the start."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            if errors is not None:
                page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.locator("#txt2img_prompt textarea").wait_for()
            yield page
        finally:
            browser.close()


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def white_fraction(element) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"))
    return float((pixels == 255).all(axis=-1).mean())


def finished(page, tab: str) -> None:
    """Wait for the job's infotext or error; fail with the error's text."""
    done = page.locator(f"#html_info_{tab} .infotext, #{tab}_progress .error")
    done.first.wait_for(timeout=TIMEOUT_MS)
    error = page.locator(f"#{tab}_progress .error")
    assert error.count() == 0, error.inner_text()
