"""Every A1111 v1.10 setting by name: listed with A1111's default, accepted by POST /options and
override_settings with A1111's type and choices; stored-only ones are named on the Settings tab; unknown keys
are refused, as A1111 refuses them."""

import json
import os

import httpx
import pytest
from fastapi import FastAPI

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.a1111_options import A1111_OPTIONS, API_RESTRICTED, inert_options
from webui.api import register_api
from webui.flags import parse_flags
from webui.options import OPTION_DEFAULTS, Options, OptionsError, checked_settings
from webui.state import SharedState

SMALL = {"steps": 1, "width": 64, "height": 64, "prompt": "a fox"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), root / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(root), "--use-cpu", "all", "--precision", "full",
                                            "--ckpt", "tiny"]))
    app = FastAPI()
    register_api(app, state)
    live = LiveServer(app)
    with httpx.Client(base_url=live.url, timeout=120) as http:
        yield http, state, root
    live.stop()
    state.queue.stop()


def test_every_a1111_key_is_listed_with_its_default(server):
    http, state, _ = server
    listed = http.get("/sdapi/v1/options").json()
    assert len(A1111_OPTIONS) > 300 and not set(A1111_OPTIONS) - set(listed)
    for key in inert_options(OPTION_DEFAULTS):  # ours (sd_model_checkpoint, ...) may differ; the rest are A1111's
        assert listed[key] == A1111_OPTIONS[key], key
    assert listed["send_seed"] is True and listed["jpeg_quality"] == 80 and listed["upscaler_for_img2img"] is None


def test_a1111_options_write_round_trip_and_unknown_keys(server):
    http, state, root = server
    # A1111's own test_options_write, and a key of each type.
    before = http.get("/sdapi/v1/options").json()["send_seed"]
    assert http.post("/sdapi/v1/options", json={"send_seed": not before}).status_code == 200
    assert http.get("/sdapi/v1/options").json()["send_seed"] is (not before)
    changes = {"jpeg_quality": 90, "img_downscale_threshold": 2, "font": "DejaVu", "hide_samplers": ["DDIM"],
               "show_progress_type": "TAESD"}
    assert http.post("/sdapi/v1/options", json=changes).status_code == 200
    stored = json.loads((root / "config.json").read_text())
    assert {key: stored[key] for key in changes} == changes
    for bad, word in [({"jpeg_quality": "high"}, "jpeg_quality"), ({"show_progress_type": "Fast"}, "Approx NN"),
                      ({"send_seed": 1}, "send_seed"), ({"no_such_setting": 1}, "unknown setting")]:
        r = http.post("/sdapi/v1/options", json=bad)
        assert r.status_code == 400 and word in r.json()["detail"], r.text
    # A1111 never lets the API change which URLs the API may fetch: left as they are, no error.
    assert http.post("/sdapi/v1/options", json={"api_forbid_local_requests": False}).status_code == 200
    assert state.options["api_forbid_local_requests"] is True and "api_forbid_local_requests" in API_RESTRICTED
    http.post("/sdapi/v1/options", json={"send_seed": before, **{k: A1111_OPTIONS[k] for k in changes}})


def test_override_settings_take_a1111_keys_and_refuse_unknown_ones(server):
    http, state, _ = server
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"face_restoration_model": "GFPGAN",
                                                                           "ESRGAN_tile": 256, "send_seed": False}})
    assert r.status_code == 200, r.text
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"no_such_setting": 1}})
    assert r.status_code == 400 and "unknown setting 'no_such_setting'" in r.json()["detail"]
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"ESRGAN_tile": "big"}})
    assert r.status_code == 400 and "ESRGAN_tile" in r.json()["detail"]
    assert state.queue.current() is None


def test_extension_settings_are_known_to_override_settings(tmp_path):
    options = Options(tmp_path / "config.json")
    options.register("my_ext_strength", 0.5)
    assert checked_settings({"my_ext_strength": 0.75}, known=options.defaults()) == {"my_ext_strength": 0.75}
    with pytest.raises(OptionsError, match="unknown setting"):
        checked_settings({"my_ext_typo": 1}, known=options.defaults())
    # Without the state's list (a script's p.override_settings) unknown keys are left out, not refused.
    assert checked_settings({"my_ext_typo": 1, "send_seed": False}) == {"send_seed": False}


def test_stored_only_settings_are_named_on_the_settings_tab_not_shown_as_controls():
    from webui.ui.settings import FIELDS, inert_options_html

    text = inert_options_html()
    assert "<code>ESRGAN_tile</code>" in text and "<code>send_seed</code>" in text
    assert not any(f"<code>{key}</code>" in text for key in FIELDS)  # what acts is never listed as inert


def test_no_code_reads_a_setting_listed_as_stored_only():
    """A setting read somewhere in webui/ must not be named "no effect here": its reader declares it
    (options.OPTION_DEFAULTS or a1111_options.READ_ELSEWHERE)."""
    import re
    from pathlib import Path

    import webui

    inert = set(inert_options(OPTION_DEFAULTS))
    read = re.compile(r'(?:options|opts|settings|values|overrides)(?:\.get\(|\[)\s*"(\w+)"|\bopts\.(\w+)')
    found = {(path.name, m[1] or m[2]) for path in Path(webui.__file__).parent.rglob("*.py")
             if path.name != "a1111_options.py" for m in read.finditer(path.read_text(encoding="utf-8"))}
    assert not {(name, key) for name, key in found if key in inert}
    assert any(key == "outdir_save" for _, key in found)  # the scan sees compat's reads
