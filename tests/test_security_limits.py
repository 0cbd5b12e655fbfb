"""Issue 20, findings 5-7: one request must not stall or break the instance for everyone.

Real HTTP against real servers (the app as `python launch.py --nowebui` builds it, with the built-in scripts) on a
tiny model:

5. limits (--max-*) refuse unbounded work before it is queued; an interrupt stops a job before its first
   denoising step, also while a long prompt is encoded; the job of a client that hangs up is cancelled;
6. settings are checked by content on POST /options, in override_settings, in the Settings tab's update and
   when config.json is read (bad values: the default and a warning; an unreadable file never stops the start);
7. client errors are a 4xx with a message (NaN, infinities, huge seeds, deep nesting, bad override_settings,
   garbage script args), and no error shows an absolute server path.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

import httpx
import pytest

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.api.errors import hide_paths
from webui.app import create_app, load_flags
from webui.extensions.loader import start_extensions
from webui.generation.denoiser import Interrupted, JobControl
from webui.generation.params import Limits, Txt2ImgParams
from webui.generation.processing import txt2img
from webui.options import Options
from webui.state import SharedState
from webui.ui.settings import load_warnings_html

SMALL = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "save_images": False}
XYZ = "X/Y/Z plot"
NAN, INF = float("nan"), float("inf")


class Server:
    """The API-only server of `python launch.py --nowebui` for these flags, serving over HTTP."""

    def __init__(self, data_dir, *flags: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        argv = ["--data-dir", str(data_dir), "--use-cpu", "all", "--precision", "full", "--nowebui", *flags]
        parsed, extensions = load_flags(argv)
        self.state = SharedState.create(parsed)
        start_extensions(self.state, extensions)
        self.live = LiveServer(create_app(self.state))
        self.url = self.live.url

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 120), **kwargs)

    def close(self) -> None:
        self.live.stop()
        self.state.queue.stop()


def add_model(data_dir) -> None:
    folder = data_dir / "models" / "Stable-diffusion"
    write_diffusers_folder(make_tiny_model("sd1"), folder / "tiny")
    (folder / "broken.safetensors").write_bytes(b"this is not a checkpoint")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    add_model(root)
    return root


@pytest.fixture(scope="module")
def server(data_dir):
    srv = Server(data_dir, "--ckpt", "tiny")  # the default limits
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as client:
        yield client


def raw_json(value) -> bytes:
    """JSON as Python's json module and many clients write it: NaN and Infinity as bare words."""
    return json.dumps(value).encode()


def post_raw(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def xyz_args(*values) -> dict:
    """X/Y/Z plot's script_args in its run() order, from the x type on; the rest keep their defaults."""
    return {"script_name": XYZ, "script_args": list(values)}


def assert_no_job_ran(server: Server) -> None:
    assert server.state.queue.current() is None and server.state.queue.pending() == []


# -- finding 5: limits, interrupt, disconnects --------------------------------------------------------------------

@pytest.mark.parametrize("fields, flag", [
    ({"prompt": "word " * 1_000_000}, "--max-prompt-length"),  # 5 MB: refused before anything reads it
    ({"negative_prompt": "x" * 20_001}, "--max-prompt-length"),
    ({"prompt": "(" * 9_000 + "a" + ")" * 9_000}, "--max-prompt-nesting"),
    ({"prompt": "[a:" * 2_000 + "b" + ":0.5]" * 2_000}, "--max-prompt-nesting"),
    ({"prompt": "a AND " * 3_300}, "--max-prompt-parts"),  # 3,301 UNet rows per step
    ({"prompt": "a AND " * 32 + "b"}, "has 33 AND parts; at most 32"),
    ({"enable_hr": True, "hr_prompt": "a AND " * 32 + "b"}, "hr_prompt has 33 AND parts"),
    ({"width": 8192, "height": 8192}, "--max-pixels"),
    ({"width": 1024, "height": 1024, "enable_hr": True, "hr_scale": 4}, "--max-pixels"),  # the hires result
    ({"enable_hr": True, "hr_resize_x": 4096, "hr_resize_y": 4096}, "--max-pixels"),
    ({"seed_resize_from_w": 4096, "seed_resize_from_h": 4096}, "--max-pixels"),
    ({"seed_resize_from_w": 10**6, "seed_resize_from_h": 10**6}, "seed_resize_from_w"),  # was a 250 GB allocation
    ({"batch_size": 8, "n_iter": 101}, "--max-images"),
    ({"n_iter": 10**9}, "--max-images"),
    ({"steps": 151}, "--max-steps"),
    ({"enable_hr": True, "hr_second_pass_steps": 151}, "--max-steps"),
    (xyz_args("Steps", "1-100000000"), "at most 800"),  # the range is counted, never expanded
    (xyz_args("Seed", "1-10", [], "CFG Scale", "1-100"), "1000 images"),
    ({"prompt": "a" + "|b" * 40, "script_name": "prompt matrix"}, "2^40 images"),
    ({"script_name": "prompts from file or textbox", "script_args": [False, False, "start", "--n_iter 801"]},
     "801 images"),
])
def test_5_unbounded_work_is_refused_before_it_runs(server, http, fields, flag):
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert r.status_code == 400, r.text[:500]
    assert flag in r.json()["detail"]
    assert_no_job_ran(server)


def test_5_the_prompts_people_write_still_run(server, http):
    """The AND-part limit and the weight bound refuse nothing real: 32 parts run, a negative prompt is not split at
    AND (A1111's rule) so its ANDs are not counted, and the weights of real prompts pass."""
    fields = {"prompt": "a cat :1.5 AND " * 31 + "a dog :-0.5",
              "negative_prompt": "blurry AND " * 40 + "(worst quality:-1.5), (" * 20 + "ugly" + ")" * 20}
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert r.status_code == 200, r.text[:500]
    real = "(masterpiece:1.2), best quality, [cat:dog:0.5], [a|b], (((detailed))) BREAK [[soft]], (x:[1:9:1])"
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": real, "negative_prompt": "(" * 48 + "a" + ")" * 48})
    assert r.status_code == 200, r.text[:500]


def test_5_a_weight_that_prompt_editing_assembles_fails_before_the_unet(server, http, monkeypatch):
    """Validation reads the prompt as written; the engine checks the texts it really encodes, before any UNet call:
    "(cat:[:1000:1])" reads "(cat:1000)" from step 2 on."""
    model = server.state.models.current()
    counting = CountingUNet(model.unet)
    monkeypatch.setattr(model, "unet", counting)
    assert http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "(cat:[:10:1])"}).status_code == 200
    assert counting.calls > 0  # this model's UNet is the one the jobs run
    calls = counting.calls
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "(cat:[:1000:1])"})
    assert r.status_code == 400 and "prompt gives 'cat' a weight of 1000" in r.json()["detail"], r.text[:500]
    assert counting.calls == calls


def test_5_limits_are_the_admins_to_raise(tmp_path):
    add_model(tmp_path)
    srv = Server(tmp_path, "--ckpt", "tiny", "--max-steps", "200", "--max-pixels", str(64 * 72),
                 "--max-prompt-length", "30000", "--max-prompt-parts", "40")
    try:
        with srv.client() as http:
            assert srv.state.flags.max_steps == 200 and Limits.from_flags(srv.state.flags).steps == 200
            long_prompt = "a" + " " * 25_000 + "cat"  # 25,004 characters, few tokens
            r = http.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 160, "prompt": long_prompt})
            assert r.status_code == 200, r.text[:500]
            r = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a AND " * 39 + "b"})  # 40 parts
            assert r.status_code == 200, r.text[:500]
            r = http.post("/sdapi/v1/txt2img", json={**SMALL, "width": 72, "height": 72})  # lowered as well
            assert r.status_code == 400 and "at most 4608 are allowed (--max-pixels)" in r.json()["detail"]
            assert http.get("/sdapi/v1/cmd-flags").json()["max_steps"] == 200
    finally:
        srv.close()


class CountingUNet:
    """The model's UNet, counting its calls."""

    def __init__(self, unet):
        self.unet, self.calls = unet, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.unet(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.unet, name)


def test_5_interrupt_stops_a_long_prompt_before_the_first_denoising_step(tmp_path):
    # A prompt of many 75-token chunks, with its words edited at every step: many text-encoder calls before the
    # first UNet call. The interrupt arrives after the first of them: nothing more runs.
    model = make_tiny_model("sd1")
    unet = CountingUNet(model.unet)
    model.unet = unet
    control = JobControl()
    chunks = []

    def interrupt_on_first_chunk(original=control.check_interrupted):
        chunks.append(1)
        control.interrupted = True  # the owner pressed Interrupt while the first chunk was encoded
        original()

    control.check_interrupted = interrupt_on_first_chunk
    prompt = " ".join(f"[w{i}:v{i}:{i % 19 + 1}]" for i in range(200))  # about 800 tokens
    params = Txt2ImgParams(prompt=prompt, steps=20, width=64, height=64, save_images=False)
    with pytest.raises(Interrupted):
        txt2img(model, params, control, outputs_root=tmp_path)
    assert len(chunks) == 1 and unet.calls == 0  # no second encoder call, and no denoising step at all

    control = JobControl()  # not interrupted: the same prompt runs through
    assert len(txt2img(model, Txt2ImgParams(prompt=prompt, steps=2, width=64, height=64, save_images=False),
                       control, outputs_root=tmp_path).images) == 1


def wait_for(condition, what: str, seconds: float = 60) -> None:
    """Wait until `condition()` holds (a bound for a stuck test, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen")
        time.sleep(0.02)


@pytest.mark.parametrize("cancel", [True, False])
def test_5_the_job_of_a_client_that_hangs_up_is_cancelled(tmp_path, cancel):
    add_model(tmp_path)
    srv = Server(tmp_path, "--ckpt", "tiny", "--max-steps", "1000000")
    task = f"task(hangs-up-{cancel})"
    try:
        with srv.client() as http:
            assert http.post("/sdapi/v1/options", json={"api_cancel_on_disconnect": cancel}).status_code == 200
        # A client that sends its request, waits until its job runs, then hangs up (closes the connection).
        payload = json.dumps({**SMALL, "steps": 1_000_000, "force_task_id": task}).encode()
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
            wait_for(lambda: (job := srv.state.queue.get(task)) is not None and job.step > 0, "the job's first step")
        job = srv.state.queue.get(task)
        if cancel:
            wait_for(lambda: job.is_finished, "the cancel")
            assert job.status == "interrupted" and job.step < 1_000_000
        else:  # A1111's way, as a setting: the job goes on
            step_at_hang_up = job.step
            wait_for(lambda: job.step >= step_at_hang_up + 20, "20 more steps")
            assert job.status == "running"
            srv.state.queue.interrupt(task, job.owner)
            job.wait(60)
    finally:
        srv.close()


# -- finding 6: settings checked by content ----------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("eta_ancestral", NAN),  # made GET /options and every "Euler a" job fail, and survived restarts
    ("eta_ancestral", INF),
    ("eta_ddim", 7),
    ("samples_format", "exe"),  # every job failed after computing its image
    ("samples_filename_pattern", "[prompt]/../x"),
    ("samples_filename_pattern", "..\\..\\x"),
    ("CLIP_stop_at_last_layers", 1000),
    ("emphasis", "Loud"),
    ("randn_source", "dice"),
    ("disabled_extensions", [1, 2]),
    ("sd_vae", "nope.safetensors"),  # a VAE that does not exist (checked by POST /options; the tab offers a list)
])
def test_6_settings_are_checked_by_content(server, http, data_dir, key, value):
    before = http.get("/sdapi/v1/options").json()
    r = post_raw(http, "/sdapi/v1/options", raw_json({key: value}))
    assert r.status_code == 400 and key in r.json()["detail"], r.text
    after = http.get("/sdapi/v1/options")
    assert after.status_code == 200 and after.json() == before  # nothing changed, for anyone
    config = data_dir / "config.json"
    assert (json.loads(config.read_text()) if config.is_file() else {}).get(key, before[key]) == before[key]
    if key != "sd_vae":  # the Settings tab saves through Options.update: the same check
        with pytest.raises(ValueError, match=key):
            server.state.options.update({key: value})
    # Every job still works, "Euler a" (the sampler that reads eta_ancestral) included, saving its image.
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Euler a", "save_images": True})
    assert r.status_code == 200, r.text


def test_6_good_settings_still_save(http, data_dir):
    changes = {"eta_ancestral": 0.5, "samples_format": "jpg", "samples_filename_pattern": "[seed]-[prompt_words]",
               "CLIP_stop_at_last_layers": 2}
    assert http.post("/sdapi/v1/options", json=changes).status_code == 200
    stored = json.loads((data_dir / "config.json").read_text())
    assert {key: stored[key] for key in changes} == changes
    reset = {"eta_ancestral": 1.0, "samples_format": "png", "samples_filename_pattern": "", "CLIP_stop_at_last_layers": 1}
    assert http.post("/sdapi/v1/options", json=reset).status_code == 200


@pytest.mark.parametrize("content, warned", [
    ("[1, 2, 3]", "JSON list"),
    ("{not json", "unreadable"),
    ('{"eta_ancestral": NaN, "samples_format": "exe", "CLIP_stop_at_last_layers": "two", '
     '"samples_filename_pattern": "../../x", "disabled_extensions": 5, "disable_all_extensions": ["all"], '
     '"emphasis": "Original", "my_extension_option": {"kept": true}}',
     "eta_ancestral"),
])
def test_6_a_bad_config_json_never_stops_the_start(tmp_path, content, warned):
    add_model(tmp_path)
    (tmp_path / "config.json").write_text(content, encoding="utf-8")
    srv = Server(tmp_path, "--ckpt", "tiny")  # starts (it used to raise on a JSON list)
    try:
        with srv.client() as http:
            options = http.get("/sdapi/v1/options")
            assert options.status_code == 200  # a NaN stored used to make this a 500
            values = options.json()
            assert values["eta_ancestral"] == 1.0 and values["samples_format"] == "png"
            assert values["CLIP_stop_at_last_layers"] == 1 and values["samples_filename_pattern"] == ""
            assert values["disabled_extensions"] == [] and values["disable_all_extensions"] == "none"
            warnings = srv.state.options.load_warnings
            assert any(warned in warning for warning in warnings), warnings
            assert warned in load_warnings_html(srv.state)  # shown on the Settings tab
            # The built-in scripts still load (disabled_extensions: 5 did not break the extension loader).
            assert XYZ.lower() in http.get("/sdapi/v1/scripts").json()["txt2img"]
            r = http.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Euler a", "save_images": True})
            assert r.status_code == 200, r.text
        if warned == "eta_ancestral":  # the good entries stay, unknown keys (an extension's) are kept
            assert srv.state.options["emphasis"] == "Original"
            assert srv.state.options.as_dict().get("my_extension_option") is None
            srv.state.options.update({"eta_ddim": 0.5})  # saving writes them back, and only good values
            stored = json.loads((tmp_path / "config.json").read_text())
            assert stored["my_extension_option"] == {"kept": True} and stored["eta_ancestral"] == 1.0
    finally:
        srv.close()


def test_6_extension_settings_are_checked_when_read(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"ext_strength": NaN, "ext_name": 3, "ext_ok": 0.25}', encoding="utf-8")
    options = Options(path)
    options.register("ext_strength", 0.5)
    options.register("ext_name", "plain")
    options.register("ext_ok", 0.75)
    assert (options["ext_strength"], options["ext_name"], options["ext_ok"]) == (0.5, "plain", 0.25)
    assert len(options.load_warnings) == 2
    with pytest.raises(ValueError, match="finite"):
        options.update({"ext_strength": float("inf")})


# -- finding 7: client errors are 4xx with a message, without server paths ----------------------------------------

@pytest.mark.parametrize("fields, field", [
    ({"cfg_scale": NAN}, "cfg_scale"),  # these five were 500s with a "broken weights" message
    ({"cfg_scale": INF}, "cfg_scale"),
    ({"cfg_scale": -INF}, "cfg_scale"),
    ({"cfg_scale": 1e308}, "cfg_scale"),
    ({"subseed_strength": NAN}, "subseed_strength"),
    ({"s_noise": INF}, "s_noise"),  # was accepted
    ({"s_tmax": INF}, "s_tmax"),  # a number the engine takes, but no JSON answer could echo it
    ({"eta": NAN}, "eta"),
    ({"denoising_strength": NAN, "enable_hr": True}, "denoising_strength"),
    ({"hr_scale": INF, "enable_hr": True}, "hr_scale"),
    ({"seed": 2**64}, "seed"),  # was a 500 (torch's seed overflow)
    ({"subseed": 2**64}, "subseed"),
    ({"seed": 2**64 - 1, "batch_size": 2}, "seed"),  # the second image's seed would overflow
    ({"seed": 10**400}, "seed"),
    ({"prompt": "(" * 20_000}, "prompt"),
    # Huge weights made the UNet's output NaN, and the job failed late with the NaN-check message.
    ({"prompt": "a (cat:1000000)"}, "prompt gives 'cat' a weight of 1e+06"),
    ({"negative_prompt": "((ugly:-20):20)"}, "negative_prompt gives 'ugly' a weight of -400"),
    ({"prompt": "((cat:0):" + "9" * 400 + ")"}, "prompt gives 'cat' a weight of nan"),  # 0 x inf
    ({"prompt": "a cat:500 AND a dog"}, "prompt gives 'a cat' a weight of 500"),  # an AND part's weight
    ({"enable_hr": True, "hr_prompt": "(" * 49 + "cat" + ")" * 49}, "hr_prompt gives 'cat' a weight of 106.7"),
    ({"override_settings": {"eta_ancestral": NAN}}, "eta_ancestral"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 1000}}, "CLIP_stop_at_last_layers"),
    ({"override_settings": {"samples_format": "exe"}}, "samples_format"),
    ({"override_settings": {"samples_filename_pattern": "[prompt]/../x"}}, "samples_filename_pattern"),
    ({"override_settings": {"emphasis": 5}}, "emphasis"),
    ({"override_settings": {"face_restoration_model": NAN}}, "face_restoration_model"),  # unknown key, ignored
    ({"comments": {"note": INF}}, "comments.note"),
    (xyz_args("garbage", "1, 2"), "Unknown axis type"),
    (xyz_args({"a": 1}, "1"), "Axis type"),
    (xyz_args(99, "1"), "out of range"),
    (xyz_args("Steps", 5), "must be text"),
    (xyz_args("Steps", "abc"), "not a whole number"),
    (xyz_args("Steps", "1, 5000"), "steps must be between"),  # refused before the first cell runs
    (xyz_args("Clip skip", "1, 1000"), "out of range"),
    (xyz_args("Size", "64x64, 9000x9000"), "must be a multiple of 8"),
    (xyz_args("Prompt S/R", "dog, cat"), "did not find dog"),
    (xyz_args("Sampler", "Euler, Not a sampler"), "Not a sampler"),
    (xyz_args("Steps", "1", [], "Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False, False,
              "wide"), "Grid margins"),
    (xyz_args("Steps", "1", [], "Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False, False,
              NAN), "script_args.16"),
])
def test_7_client_errors_are_4xx_with_a_message(server, http, fields, field):
    r = post_raw(http, "/sdapi/v1/txt2img", raw_json({**SMALL, **fields}))
    assert 400 <= r.status_code < 500, r.text[:500]
    assert field in r.json()["detail"], r.json()["detail"][:500]
    assert server.state.queue.current() is None


def test_7_no_absolute_server_paths_in_errors(server, http, data_dir):
    # A checkpoint that cannot load (the server's problem: a 500), an outputs folder that cannot take images.
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"sd_model_checkpoint": "broken"}})
    assert r.status_code == 500 and "broken" in r.json()["detail"]
    assert str(data_dir) not in r.text and not re.search(r"['\"( ]/(tmp|home|root|work|usr|var)/", r.text), r.text
    for name in ("/etc/passwd", str(data_dir / "models" / "Stable-diffusion" / "nope.safetensors")):
        r = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": name})
        assert r.status_code == 404 and str(data_dir) not in r.text and "/etc/" not in r.text, r.text


def test_7_hide_paths_keeps_routes_and_relative_names(tmp_path):
    inside = tmp_path / "models" / "Stable-diffusion" / "x.safetensors"
    text = f"could not load {inside}: see /sdapi/v1/sd-models; [Errno 2] '{tmp_path.parent}/other/y.png'"
    shown = hide_paths(text, tmp_path)
    assert shown == "could not load models/Stable-diffusion/x.safetensors: see /sdapi/v1/sd-models; [Errno 2] 'y.png'"
    assert hide_paths(r"failed: C:\Users\ann\sd\model.ckpt") == "failed: model.ckpt"
