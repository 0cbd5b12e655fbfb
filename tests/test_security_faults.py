"""Issue 20, finding 8 (faults): a crash while saving, a broken checkpoint sorting first, an outputs
folder that cannot take images, a styles.csv with a stray quote. Each reproduced, over real HTTP
where a client would meet it."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from safetensors.torch import save_file

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.flags import parse_flags
from webui.generation import images
from webui.generation.params import ParamsError
from webui.models.discovery import CheckpointInfo
from webui.models.weights import CheckpointError, checkpoint_problem
from webui.state import SharedState
from webui.styles import load_styles, parse_styles, save_style

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"steps": 2, "width": 64, "height": 64}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class Server:
    """The API over a real HTTP server on `data` (models, outputs, styles.csv live there)."""

    def __init__(self, data: Path, *flags: str):
        self.state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all",
                                                     "--precision", "full", *flags]))
        app = FastAPI()
        register_api(app, self.state)
        self.live = LiveServer(app)
        self.http = httpx.Client(base_url=self.live.url, timeout=120)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.live.stop()
        self.state.queue.stop()


def tiny_checkpoint(data: Path, name: str = "tiny") -> Path:
    return write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / name)


# ---- images are written atomically ----------------------------------------------------------------------

# Saves one image in a child process whose file writes stop half-way with SIGKILL: what `kill -9`
# during a save does. Run as a script so that the crash is real (no exception handler runs).
_KILLED_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from PIL import Image
    from webui.generation import images

    real_fdopen = os.fdopen

    class HalfThenKilled:
        def __init__(self, file):
            self.file = file
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.file, name)

    os.fdopen = lambda *args, **kwargs: HalfThenKilled(real_fdopen(*args, **kwargs))
    images.save_image(Image.new("RGB", (64, 64), "red"), Path(sys.argv[1]), seed=7, prompt="x", infotext="t")
""")


def visible(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_kill_while_saving_leaves_no_partial_image_and_the_next_save_works(tmp_path):
    folder = tmp_path / "outputs"
    images.save_image(Image.new("RGB", (64, 64), "blue"), folder, seed=1, prompt="x", infotext="before")
    run = subprocess.run([sys.executable, "-c", _KILLED_WHILE_SAVING, str(folder)], cwd=ROOT,
                         capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr.decode()
    # Before: a zero-byte 00001-7.png. Now only the complete image has a name; the cut-short
    # write is a hidden temporary file.
    assert visible(folder) == ["00000-1.png"]
    leftovers = [name for name in os.listdir(folder) if name.startswith(".")]
    assert leftovers and all(name.endswith(".tmp") for name in leftovers)
    # The counter skips the leftover; the next image is whole and carries its infotext.
    path = images.save_image(Image.new("RGB", (64, 64), "green"), folder, seed=7, prompt="x", infotext="after")
    assert path.name == "00001-7.png"
    assert images.read_infotext(path) == "after" and Image.open(path).getpixel((0, 0)) == (0, 128, 0)


def test_a_failed_write_cleans_up_and_names_nothing(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class HalfThenFails:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()
            return False

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: HalfThenFails(real_fdopen(*args, **kwargs)))
    with pytest.raises(OSError, match="No space left"):
        images.save_image(Image.new("RGB", (64, 64)), tmp_path, seed=3, prompt="x", infotext="t", save_txt=True)
    assert os.listdir(tmp_path) == []  # neither a named file nor a temporary one
    monkeypatch.undo()
    assert images.save_image(Image.new("RGB", (64, 64)), tmp_path, seed=3, prompt="x", infotext="t").name == "00000-3.png"


def test_the_counter_ignores_hidden_and_temporary_files(tmp_path):
    for name in (".99999-1.png", ".4f2a.tmp", ".12345678.tmp", "00004-1.png"):
        (tmp_path / name).write_bytes(b"x")
    assert images.next_sequence_number(tmp_path) == 5
    saved = images.save_image(Image.new("RGB", (8, 8)), tmp_path, seed=2, prompt="x", infotext="t")
    assert saved.name == "00005-2.png" and oct(saved.stat().st_mode & 0o777) != "0o600"  # not private like mkstemp


def test_a_taken_name_is_never_overwritten(tmp_path):
    taken = tmp_path / "00000-5.png"
    taken.write_bytes(b"someone else's image")
    # As if another job took the number between counting and claiming.
    assert not images._claim(images._write_temp_file(tmp_path, b"new"), taken)
    assert taken.read_bytes() == b"someone else's image"


# ---- an unloadable checkpoint is never the default ---------------------------------------------------------

def broken_checkpoints(data: Path) -> None:
    folder = data / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "aaa-broken.safetensors").write_bytes(b"this is not a checkpoint" * 10)
    # A download cut short: a real safetensors file missing its second half.
    whole = data / "whole.safetensors"
    save_file({"weight": torch.zeros(4096)}, str(whole))
    content = whole.read_bytes()
    (folder / "aab-truncated.safetensors").write_bytes(content[: len(content) // 2])
    whole.unlink()


def test_a_broken_checkpoint_sorting_first_is_skipped_for_default_jobs(tmp_path, caplog):
    broken_checkpoints(tmp_path)
    tiny_checkpoint(tmp_path, "tiny")
    with Server(tmp_path) as server, caplog.at_level(logging.WARNING, logger="webui.state"):
        http = server.http
        # The list still shows every file; the one a job would use is the first that loads.
        titles = [m["model_name"] for m in http.get("/sdapi/v1/sd-models").json()]
        assert titles[:2] == ["aaa-broken", "aab-truncated"]
        assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny")
        # Before: every default job failed on aaa-broken.safetensors.
        r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **SMALL})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["info"])["sd_model_name"] == "tiny"
        warned = " ".join(record.getMessage() for record in caplog.records)
        assert "aaa-broken" in warned and "aab-truncated" in warned and "truncated or corrupt" in warned
        # Chosen explicitly, the broken file fails that job with the reason, and only that job.
        r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **SMALL,
                                                 "override_settings": {"sd_model_checkpoint": "aaa-broken"}})
        assert r.status_code == 500 and "aaa-broken.safetensors" in r.text and "corrupt" in r.text
        assert str(tmp_path) not in r.text
        r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **SMALL})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["info"])["sd_model_name"] == "tiny"


def test_a_checkpoint_that_fails_only_when_loading_is_skipped_and_remembered(tmp_path, caplog, monkeypatch):
    # A whole safetensors file (its header is fine) that holds no Stable Diffusion weights.
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    save_file({"not_a_unet": torch.zeros(3)}, str(folder / "aaa-other-model.safetensors"))
    tiny_checkpoint(tmp_path, "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full"]))
    assert checkpoint_problem(state.models.checkpoints()[0]) is None
    with caplog.at_level(logging.WARNING, logger="webui.state"):
        model = state.models.current()
    assert model.name == "tiny"
    assert "aaa-other-model" in caplog.text and "trying the next one" in caplog.text
    # Known now: the default no longer points at it, and it is not loaded again for the next default.
    assert state.models.default_checkpoint().name == "tiny"
    state.models.slot.unload()
    loads = []
    real_switch = state.models.slot.switch
    monkeypatch.setattr(state.models.slot, "switch", lambda info, **kw: loads.append(info.name) or real_switch(info, **kw))
    assert state.models.current().name == "tiny" and loads == ["tiny"]
    # Refresh forgets it: a file replaced by a good download gets its chance.
    state.models.refresh()
    assert state.models.default_checkpoint().name == "aaa-other-model"


def test_with_no_loadable_checkpoint_the_error_lists_each_reason(tmp_path):
    broken_checkpoints(tmp_path)
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    with pytest.raises(CheckpointError) as caught:
        state.models.current()
    assert "aaa-broken.safetensors" in str(caught.value) and "aab-truncated.safetensors" in str(caught.value)


def test_the_header_check_finds_truncated_files_of_each_kind(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(1000)}, str(good))
    ckpt = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, ckpt)
    for path in (good, ckpt):
        cut = tmp_path / f"cut{path.suffix}"
        cut.write_bytes(path.read_bytes()[:-100])
        info = lambda p: CheckpointInfo(path=p, name=p.stem, kind="ckpt" if p.suffix == ".ckpt" else "safetensors")  # noqa: E731
        assert checkpoint_problem(info(path)) is None
        assert "truncated or corrupt" in checkpoint_problem(info(cut))
    folder = tiny_checkpoint(tmp_path, "folder")
    assert checkpoint_problem(CheckpointInfo(path=folder, name="folder", kind="diffusers")) is None
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "folder/unet/diffusion_pytorch_model.safetensors" in checkpoint_problem(
        CheckpointInfo(path=folder, name="folder", kind="diffusers"))


# ---- the outputs folder is checked before compute ------------------------------------------------------------

def test_an_outputs_folder_that_is_a_file_fails_the_job_before_sampling(tmp_path, caplog):
    tiny_checkpoint(tmp_path)
    (tmp_path / "outputs").write_text("a file where the outputs folder should be")
    with caplog.at_level(logging.WARNING, logger="webui.jobs"), Server(tmp_path) as server:
        # At start, in the log, before anyone has waited for an image.
        assert "outputs is a file, not a folder" in caplog.text
        model = server.state.models.current()
        unet_calls = []
        model.unet.register_forward_pre_hook(lambda *args: unet_calls.append(1))
        image = Image.new("RGB", (64, 64), "white")
        import base64
        import io
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        init = base64.b64encode(buffer.getvalue()).decode()
        for route, extra in (("txt2img", {}), ("img2img", {"init_images": [init]})):
            r = server.http.post(f"/sdapi/v1/{route}", json={"prompt": "x", **SMALL, **extra})
            # A server-side setup problem (500), named, before the UNet ran once; no server path shown.
            assert r.status_code == 500, r.text
            assert "cannot save images: outputs is a file, not a folder" in r.text
            assert str(tmp_path) not in r.text
            assert unet_calls == []
        # The server keeps serving jobs that do not save.
        r = server.http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **SMALL})
        assert r.status_code == 200, r.text
        assert unet_calls


def test_output_folder_problems_are_named(tmp_path):
    (tmp_path / "file").write_text("x")
    assert images.output_folder_problem(tmp_path / "file" / "a" / "b", shown_from=tmp_path) == \
        "file is a file, not a folder"
    # The check at start creates nothing; the one before a job makes the folder, as saving would.
    assert images.output_folder_problem(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    images.check_output_folder(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir() and os.listdir(tmp_path / "new" / "deeper") == []
    with pytest.raises(images.OutputFolderError, match="cannot save images: file is a file"):
        images.check_output_folder(tmp_path / "file" / "x", shown_from=tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_outputs_folder_is_named(tmp_path):
    folder = tmp_path / "outputs"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert "outputs is not writable" in images.output_folder_problem(folder / "txt2img-images", shown_from=tmp_path)
    finally:
        folder.chmod(0o755)


def test_nothing_is_checked_when_images_are_not_saved(tmp_path):
    from webui.generation.params import Txt2ImgParams
    from webui.generation.processing import txt2img

    (tmp_path / "outputs").write_text("x")
    result = txt2img(make_tiny_model("sd1"), Txt2ImgParams(prompt="x", save_images=False, **SMALL),
                     outputs_root=tmp_path / "outputs")
    assert len(result.images) == 1 and result.paths == []


# ---- styles.csv problems are found and shown ---------------------------------------------------------------

HEADER = "name,prompt,negative_prompt\n"


def test_an_unclosed_quote_costs_one_style_and_is_reported():
    # Before: fox swallowed cat (one style, cat lost, nothing said).
    found = parse_styles((HEADER + 'fox,"a fox, {prompt},blurry\ncat,a cat,ugly\n').encode())
    assert list(found.styles) == ["cat"] and found.styles["cat"]["negative_prompt"] == "ugly"
    assert found.problems == ["styles.csv line 2: style 'fox': a quote opened here is never closed; skipped"]
    # A stray quote that a later quote "closes": the rows after it are still read.
    found = parse_styles((HEADER + 'fox,"a fox, {prompt},blurry\ncat,"a cat",ugly\ndog,a dog,bad\n').encode())
    assert list(found.styles) == ["cat", "dog"] and "line 2: style 'fox': a quote out of place" in found.problems[0]
    # Closed at a line end: kept as read, but said.
    found = parse_styles((HEADER + 'fox,"a fox, {prompt},blurry\ncat,a cat,ugly"\ndog,a dog,bad\n').encode())
    assert list(found.styles) == ["fox", "dog"]
    assert "runs on to line 3" in found.problems[0] and "a quote left open?" in found.problems[0]


def test_good_files_read_as_before_with_no_problems():
    text = HEADER + 'fox,"a fox, {prompt}",blurry\nmulti,"line one,\nline two, {prompt}",neg\nbare,just text\n'
    found = parse_styles(("\ufeff" + text).encode())
    assert found.problems == []
    assert found.styles["multi"]["prompt"] == "line one,\nline two, {prompt}"
    assert found.styles["bare"] == {"name": "bare", "prompt": "just text", "negative_prompt": ""}


def test_other_broken_rows_are_reported_and_the_rest_kept():
    found = parse_styles((HEADER + "fox,a fox, {prompt},blurry\ncat,a,b\ncat,c,d\n").encode())
    assert list(found.styles) == ["cat"] and found.styles["cat"]["prompt"] == "c"
    assert "line 2: style 'fox' has 4 fields where the header has 3" in found.problems[0]
    assert "line 4: style 'cat' repeats a name" in found.problems[1]
    # Before: a file saved as cp1252 emptied the whole list.
    found = parse_styles((HEADER + "fox,a fox,blurry\ncafé,au café,x\n").encode("cp1252"))
    assert list(found.styles) == ["fox"] and "not UTF-8" in found.problems[0] and "line 3" in found.problems[1]
    assert parse_styles(b"fox,a,b\n").problems == [
        "styles.csv line 1: the first row must be the header name,prompt,negative_prompt; no styles read"]


def test_a_file_with_problems_is_not_written_over(tmp_path):
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path)]))
    broken = HEADER + 'fox,"a fox, {prompt},blurry\ncat,a cat,ugly\n'
    (tmp_path / "styles.csv").write_text(broken, encoding="utf-8")
    with pytest.raises(ParamsError, match="not saved: fix styles.csv first: .*line 2"):
        save_style(state, "new", "p", "n")
    assert (tmp_path / "styles.csv").read_text(encoding="utf-8") == broken
    (tmp_path / "styles.csv").unlink()
    (tmp_path / "styles.csv").mkdir()  # unreadable: before, saving replaced it with one style
    assert load_styles(state).problems and load_styles(state).styles == {}


def test_the_api_lists_readable_styles_and_says_what_is_wrong(tmp_path):
    tiny_checkpoint(tmp_path)
    (tmp_path / "styles.csv").write_text(HEADER + 'fox,"a fox, {prompt},blurry\ncat,a cat,ugly\n', encoding="utf-8")
    with Server(tmp_path) as server:
        r = server.http.get("/sdapi/v1/prompt-styles")
        assert r.status_code == 200
        assert r.json() == [{"name": "cat", "prompt": "a cat", "negative_prompt": "ugly"}]  # A1111's shape
        assert json.loads(r.headers["X-Styles-Problems"]) == [
            "styles.csv line 2: style 'fox': a quote opened here is never closed; skipped"]
        # The style lost to the problem: the client is told why it is missing.
        r = server.http.post("/sdapi/v1/txt2img", json={"prompt": "x", "styles": ["fox"], "save_images": False, **SMALL})
        assert r.status_code == 404 and "no style named 'fox'" in r.text and "never closed" in r.text
        (tmp_path / "styles.csv").write_text(HEADER + "cat,a cat,ugly\n", encoding="utf-8")
        assert "X-Styles-Problems" not in server.http.get("/sdapi/v1/prompt-styles").headers


@pytest.mark.slow  # a browser test
@pytest.mark.slow
def test_the_ui_shows_styles_problems_under_the_picker(tmp_path):
    from playwright.sync_api import expect

    from ui_helpers import open_page, serve_ui  # skips when Chromium is missing

    (tmp_path / "styles.csv").write_text(HEADER + 'fox,"a fox, {prompt},blurry\ncat,a cat,ugly\n', encoding="utf-8")
    with serve_ui(tmp_path) as (url, _state, data), open_page(url) as page:
        note = page.locator("#txt2img_styles_problems")
        expect(note).to_contain_text("styles.csv has problems")
        expect(note).to_contain_text("line 2: style 'fox': a quote opened here is never closed; skipped")
        # Fixed on disk: the note goes away the next time the picker is opened.
        (data / "styles.csv").write_text(HEADER + "fox,a fox,blurry\ncat,a cat,ugly\n", encoding="utf-8")
        page.locator("#txt2img_styles input").click()
        expect(note).to_be_hidden()
        expect(page.get_by_role("option", name="fox", exact=True)).to_be_visible()  # back in the list
