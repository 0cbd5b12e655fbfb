"""A1111's output-folder settings decide where images are saved (over real HTTP): outdir_txt2img_samples,
outdir_img2img_samples, outdir_samples over both, the grids' folders for scripts; relative to --data-dir or
absolute. Only the settings move them: override_settings (a request's or a script's) naming one is refused,
--hide-ui-dir-config freezes them; the file= route serves what is saved there."""

import base64
import io
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from script_helpers import load_extension, write_extension
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.extensions.files import register_file_route
from webui.flags import parse_flags
from webui.generation.images import output_folder_problem
from webui.jobs import JobQueue
from webui.options import output_folder
from webui.state import SharedState

SMALL = {"prompt": "a fox", "steps": 1, "width": 64, "height": 64, "seed": 5}
BUILTIN = Path(__file__).resolve().parents[1] / "webui" / "extensions" / "builtin"

SCRIPTS = {
    "record.py": """
        from modules import scripts
        from modules.processing import process_images

        SEEN = []

        class Record(scripts.Script):
            def title(self):
                return "Record folders"

            def ui(self, is_img2img):
                return []

            def run(self, p):
                SEEN.append((p.outpath_samples, p.outpath_grids))
                return process_images(p)
    """,
    "mover.py": """
        from modules import scripts
        from modules.processing import process_images

        class Mover(scripts.Script):
            def title(self):
                return "Move outputs"

            def ui(self, is_img2img):
                return []

            def run(self, p):
                p.override_settings = {**p.override_settings, "outdir_txt2img_samples": "/tmp/moved-by-a-script"}
                return process_images(p)
    """,
}


def serve(state: SharedState) -> LiveServer:
    app = FastAPI()
    register_api(app, state)
    register_file_route(app, state)
    return LiveServer(app)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), root / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(root), "--use-cpu", "all", "--precision", "full",
                                            "--ckpt", "tiny", "--nowebui"]))
    modules = load_extension(state, write_extension(root / "extensions", "folders", SCRIPTS))
    load_extension(state, BUILTIN / "prompt-matrix")
    state.runners.clear()  # API only: the runners are built without a UI
    live = serve(state)
    with httpx.Client(base_url=live.url, timeout=120) as http:
        yield http, state, root, modules["record"].SEEN
    live.stop()
    state.queue.stop()


@contextmanager
def settings(http, **values):
    """The settings changed through POST /sdapi/v1/options, and put back afterwards."""
    before = {key: value for key, value in http.get("/sdapi/v1/options").json().items() if key in values}
    r = http.post("/sdapi/v1/options", json=values)
    assert r.status_code == 200, r.text
    try:
        yield
    finally:
        http.post("/sdapi/v1/options", json=before)


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.exists() else []


def b64_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def generate(http, kind: str, **extra):
    body = {**SMALL, **extra}
    if kind == "img2img":
        body.update(init_images=[b64_png()], denoising_strength=0.5)
    return http.post(f"/sdapi/v1/{kind}", json=body)


def assert_saved_once_in(folder: Path) -> Path:
    (saved,) = pngs(folder)
    assert saved.parent.parent == folder and re.fullmatch(r"\d{4}-\d{2}-\d{2}", saved.parent.name)  # the <date> rule
    return saved


@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
def test_images_go_to_the_folder_the_settings_name_relative_or_absolute(server, kind, tmp_path):
    http, _, root, _ = server
    with settings(http, **{f"outdir_{kind}_samples": f"mine/{kind}"}):
        r = generate(http, kind)
        assert r.status_code == 200, r.text
        assert_saved_once_in(root / "mine" / kind)  # relative: inside --data-dir, A1111's root
        assert not pngs(root / "outputs" / f"{kind}-images")
    elsewhere = tmp_path / "elsewhere"
    with settings(http, **{f"outdir_{kind}_samples": str(elsewhere)}):
        assert generate(http, kind).status_code == 200
        saved = assert_saved_once_in(elsewhere)  # absolute: used as it is
        served = http.get(f"/file={saved}")  # the file= route serves the folder the settings name
        assert served.status_code == 200 and served.content == saved.read_bytes()
    assert http.get(f"/file={saved}").status_code == 404  # no longer an output folder: no longer served
    assert not pngs(root / "outputs" / f"{kind}-images")


def test_outdir_samples_overrides_both_kinds(server):
    http, _, root, _ = server
    with settings(http, outdir_samples="everything", outdir_txt2img_samples="ignored"):
        assert generate(http, "txt2img").status_code == 200
        assert generate(http, "img2img").status_code == 200
        assert len(pngs(root / "everything")) == 2 and not pngs(root / "ignored")


def test_scripts_see_the_settings_folders_and_save_grids_there(server):
    http, _, root, seen = server
    with settings(http, outdir_txt2img_samples="scripted", outdir_txt2img_grids="scripted-grids"):
        r = generate(http, "txt2img", script_name="record folders", script_args=[])
        assert r.status_code == 200, r.text
        assert seen[-1] == (str(root / "scripted"), str(root / "scripted-grids"))
        assert_saved_once_in(root / "scripted")
        r = generate(http, "txt2img", prompt="a fox|red", script_name="prompt matrix")
        assert r.status_code == 200, r.text
        assert len(pngs(root / "scripted-grids")) == 1  # the prompt matrix grid, in p.outpath_grids
    with settings(http, outdir_grids="all-grids"):
        generate(http, "txt2img", script_name="record folders", script_args=[])
        assert seen[-1][1] == str(root / "all-grids")


@pytest.mark.parametrize("key", ["outdir_txt2img_samples", "outdir_samples", "outdir_grids"])
def test_a_request_cannot_move_the_output_folders(server, key, tmp_path):
    http, state, _, _ = server
    r = generate(http, "txt2img", override_settings={key: str(tmp_path / "moved")})
    assert r.status_code == 400 and key in r.json()["detail"] and "output folder" in r.json()["detail"]
    assert not (tmp_path / "moved").exists() and state.queue.current() is None


def test_a_script_cannot_move_the_output_folders(server):
    http, _, _, _ = server
    r = generate(http, "txt2img", script_name="move outputs", script_args=[])
    assert r.status_code == 400 and "outdir_txt2img_samples" in r.json()["detail"]
    assert not Path("/tmp/moved-by-a-script").exists()


def test_a_folder_with_nul_is_refused(server):
    http, _, _, _ = server
    r = http.post("/sdapi/v1/options", json={"outdir_img2img_samples": "a\0b"})
    assert r.status_code == 400 and "outdir_img2img_samples" in r.json()["detail"]


def test_hide_ui_dir_config_freezes_every_output_folder(tmp_path):
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--hide-ui-dir-config"]))
    live = serve(state)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            for key in ("outdir_txt2img_samples", "outdir_img2img_samples", "outdir_samples", "outdir_grids"):
                r = http.post("/sdapi/v1/options", json={key: "elsewhere"})
                assert r.status_code == 400 and key in r.json()["detail"] and "frozen" in r.json()["detail"]
            assert http.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 1}).status_code == 200
    finally:
        live.stop()
        state.queue.stop()
    assert state.output_folder("txt2img") == tmp_path / "outputs" / "txt2img-images"


def test_the_start_check_looks_at_the_settings_folders(tmp_path, caplog):
    (tmp_path / "blocked").write_text("a file where a folder should be")
    (tmp_path / "config.json").write_text('{"outdir_img2img_samples": "blocked/img"}')
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    with caplog.at_level(logging.WARNING, logger="webui.jobs"):
        JobQueue(state)._check_outputs()
    assert "blocked/img" in caplog.text and "txt2img-images" not in caplog.text


def test_folder_mapping_and_messages_outside_the_data_dir(tmp_path):
    data = tmp_path / "data"
    options = {"outdir_samples": "", "outdir_txt2img_samples": "", "outdir_grids": "", "outdir_img2img_grids": "/g"}
    assert output_folder(options, data, "txt2img") == data / "outputs" / "txt2img-images"  # empty: the default
    assert output_folder(options, data, "img2img", grids=True) == Path("/g")
    (tmp_path / "file").write_text("x")
    problem = output_folder_problem(tmp_path / "file" / "images", create=True, shown_from=data)
    assert problem.startswith(".../file is a file") and str(tmp_path) not in problem  # no server paths in replies
