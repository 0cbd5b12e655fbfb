"""The Checkpoint Merger tab in the browser: choose A and B, merge, and the new checkpoint is in the list."""

import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import load_file

from checkpoint_files import write_safetensors
from tiny_models import make_tiny_model
from ui_helpers import TIMEOUT_MS, open_page, serve_ui


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    folder = data / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for name, seed in (("alpha", 1), ("beta", 2)):
        write_safetensors(make_tiny_model("sd1", seed=seed), folder / f"{name}.safetensors")
    with serve_ui(data) as served:
        yield served


def choose(page, elem_id: str, name: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=name).first.click()


@pytest.mark.slow
def test_merge_two_checkpoints_from_the_tab(server):
    url, state, data = server
    with open_page(url) as page:
        page.get_by_role("tab", name="Checkpoint Merger").click()
        choose(page, "modelmerger_primary_model_name", "alpha")
        choose(page, "modelmerger_secondary_model_name", "beta")
        page.locator("#modelmerger_custom_name textarea, #modelmerger_custom_name input").first.fill("from_ui")
        page.locator("#modelmerger_merge").click()
        expect(page.locator("#modelmerger_result")).to_contain_text("Checkpoint saved: from_ui", timeout=TIMEOUT_MS)
    path = data / "models" / "Stable-diffusion" / "from_ui.safetensors"
    assert any(info.path == path for info in state.models.checkpoints())
    merged, a, b = (load_file(p) for p in (path, path.with_name("alpha.safetensors"), path.with_name("beta.safetensors")))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    torch.testing.assert_close(merged[key], a[key] * 0.7 + b[key] * 0.3)  # the tab's default: Weighted sum, M 0.3
