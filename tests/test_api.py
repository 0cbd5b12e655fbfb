"""/sdapi/v1 over real HTTP: a uvicorn server on a free port, a tiny model folder, concurrent clients."""

import base64
import io
import json
import os
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.flags import parse_flags
from webui.generation.images import read_infotext
from webui.state import SharedState

SMALL = {"steps": 2, "width": 64, "height": 64}


class Server:
    def __init__(self, state: SharedState):
        app = FastAPI()
        register_api(app, state)
        self.state = state
        self.live = LiveServer(app)
        self.url = self.live.url

    def client(self, client_id="", auth=None) -> httpx.Client:
        headers = {"X-Client-Id": client_id} if client_id else {}
        return httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=60)

    def close(self):
        self.live.stop()
        self.state.queue.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    folder = root / "models" / "Stable-diffusion"
    write_diffusers_folder(make_tiny_model("sd1"), folder / "tiny")
    (folder / "broken.safetensors").write_bytes(b"this is not a checkpoint")
    (root / "styles.csv").write_text('name,prompt,negative_prompt\nfox,"a fox, {prompt}",blurry\n', encoding="utf-8")
    # A real checkpoint outside the models folder: naming its path must not load it.
    write_diffusers_folder(make_tiny_model("sd1"), root / "outside")
    return root


@pytest.fixture(scope="module")
def server(data_dir):
    # --max-steps raised (default 150): the queue test needs a job long enough to watch and interrupt.
    flags = parse_flags(["--data-dir", str(data_dir), "--use-cpu", "all", "--precision", "full", "--ckpt", "tiny",
                         "--max-steps", "1000"])
    srv = Server(SharedState.create(flags))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def http(server):
    with server.client("main") as client:
        yield client


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_txt2img_a1111_shape_defaults_and_infotext(http, data_dir):
    r = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "seed": 7, "batch_size": 2, **SMALL})
    assert r.status_code == 200, r.text
    assert "x-process-time" in r.headers
    body = r.json()
    assert set(body) == {"images", "parameters", "info"} and len(body["images"]) == 2
    assert body["parameters"]["steps"] == 2 and body["parameters"]["sampler_index"] == "Euler"
    info = json.loads(body["info"])
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and info["sampler_name"] == "Euler"
    assert len(info["infotexts"]) == 2 and "Seed: 7" in info["infotexts"][0]
    image = decode(body["images"][0])
    assert image.size == (64, 64) and read_infotext(image) == info["infotexts"][0]
    assert len(list((data_dir / "outputs").rglob("*.png"))) == 2  # saved unless the client says otherwise

    r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": True, "send_images": False,
                                             "sampler_name": "DPM++ 2M", "scheduler": "Karras",
                                             "styles": ["fox"], **SMALL})
    assert r.status_code == 200, r.text
    assert r.json()["images"] == []
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "a fox, x" and info["negative_prompt"] == "blurry"
    assert len(list((data_dir / "outputs").rglob("*.png"))) == 3
    r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **SMALL})
    assert r.status_code == 200 and len(list((data_dir / "outputs").rglob("*.png"))) == 3


def test_img2img_inpaint_and_png_info(http):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = http.post("/sdapi/v1/img2img", json={"init_images": [b64_png(init)], "mask": b64_png(mask), "seed": 3,
                                             "denoising_strength": 0.5, **SMALL})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parameters"]["init_images"] is None and len(body["images"]) == 1
    info = json.loads(body["info"])
    assert "Denoising strength: 0.5" in info["infotexts"][0]

    r = http.post("/sdapi/v1/png-info", json={"image": body["images"][0]})
    assert r.status_code == 200
    assert r.json()["info"] == info["infotexts"][0] and r.json()["parameters"]["Seed"] == "3"
    assert http.post("/sdapi/v1/png-info", json={"image": b64_png(init)}).json()["info"] == ""
    assert http.post("/sdapi/v1/img2img", json=SMALL).status_code == 400  # no init image


def test_lists_and_empty_features(http, server):
    get = lambda path: http.get(f"/sdapi/v1/{path}").json()  # noqa: E731
    assert any(s["name"] == "Euler" and "aliases" in s for s in get("samplers"))
    assert {"name", "label", "aliases", "default_rho", "need_inner_model"} <= set(get("schedulers")[0])
    models = get("sd-models")
    assert [m["model_name"] for m in models] == ["broken", "tiny"] or {m["model_name"] for m in models} == {"broken", "tiny"}
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    assert http.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert get("sd-vae") == [] and get("loras") == [] and get("script-info") == [] and get("extensions") == []
    assert get("embeddings") == {"loaded": {}, "skipped": {}}
    assert get("scripts") == {"txt2img": [], "img2img": []}
    assert {"name": "Latent"} in get("latent-upscale-modes")
    assert all("Latent" not in u["name"] for u in get("upscalers"))
    assert get("prompt-styles") == [{"name": "fox", "prompt": "a fox, {prompt}", "negative_prompt": "blurry"}]
    assert get("memory")["ram"]["total"] > 0 and "cuda" in get("memory")
    flags = get("cmd-flags")
    assert flags["api_auth"] is None and flags["data_dir"] == str(server.state.flags.data_dir)
    assert http.get("/internal/ping").json() == {}
    assert http.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}
    r = http.post("/internal/progress", json={"id_task": "task(unknown)", "id_live_preview": -1})
    assert r.json()["active"] is False and r.json()["completed"] is False


def test_options_and_path_traversal(http, data_dir):
    assert http.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1
    assert http.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 31337}).status_code == 200
    assert http.get("/sdapi/v1/options").json()["eta_noise_seed_delta"] == 31337
    assert json.loads((data_dir / "config.json").read_text())["eta_noise_seed_delta"] == 31337
    assert http.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 0}).status_code == 200
    r = http.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": "two"})
    assert r.status_code == 400 and "CLIP_stop_at_last_layers" in r.json()["detail"]
    assert set(r.json()) == {"error", "detail", "body", "errors"}
    for name in ("../../etc/passwd", "/etc/passwd", str(data_dir / "outside"), "..\\..\\outside"):
        r = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": name})
        assert r.status_code == 404 and "sd_model_checkpoint" in r.json()["detail"], name
        r = http.post("/sdapi/v1/txt2img", json={"override_settings": {"sd_model_checkpoint": name}, **SMALL})
        assert r.status_code == 404, name
    assert http.post("/sdapi/v1/txt2img", json={"styles": ["../../etc/passwd"], **SMALL}).status_code == 404
    # Nothing chosen: the option reads as the checkpoint in use (A1111 never shows ""), and stays unstored.
    assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny")
    assert json.loads((data_dir / "config.json").read_text())["sd_model_checkpoint"] == ""


@pytest.mark.parametrize("body, status, field", [
    ({"steps": "many"}, 422, "steps"),
    ({"width": [1]}, 422, "width"),
    ({"steps": 0}, 400, "steps"),
    ({"width": 65}, 400, "width"),
    ({"sampler_name": "Nope"}, 400, "Nope"),
    ({"scheduler": "Nope"}, 400, "Nope"),
    ({"enable_hr": True, "hr_upscaler": "Nope"}, 400, "Nope"),
    ({"override_settings": {"CLIP_stop_at_last_layers": "x"}}, 400, "CLIP_stop_at_last_layers"),
    ({"restore_faces": True}, 400, "restore_faces"),
    ({"init_images": ["not base64!!"]}, 400, "init_images[0]"),
    ({"init_images": [base64.b64encode(b"not an image").decode()]}, 400, "init_images[0]"),
    ({"init_images": ["http://169.254.169.254/x.png"]}, 400, "init_images[0]"),
])
def test_bad_input_is_a_4xx_naming_the_field(http, body, status, field):
    path = "/sdapi/v1/img2img" if "init_images" in body else "/sdapi/v1/txt2img"
    r = http.post(path, json={**SMALL, **body})
    assert r.status_code == status, r.text
    assert field in r.json()["detail"] and "x-process-time" in r.headers


def test_oversize_image_refused(http):
    huge = Image.new("1", (5000, 4000))
    r = http.post("/sdapi/v1/png-info", json={"image": b64_png(huge)})
    assert r.status_code == 400 and "image" in r.json()["detail"]
    assert http.post("/sdapi/v1/png-info", content=b"{not json").status_code == 422


def test_queue_with_concurrent_clients(server):
    alice, bob, carol, dave = (server.client(n) for n in ("alice", "bob", "carol", "dave"))
    results = {}

    def run(name, client, **body):
        results[name] = client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
        results[name + "_at"] = time.monotonic()

    def wait_for(task, status, client):  # progress answers a task's owner only
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = client.get("/sdapi/v1/progress", params={"id_task": task})
            if r.json()["status"] == status:
                return r.json()
            time.sleep(0.02)
        raise AssertionError(f"{task} never became {status}")

    threads = [threading.Thread(target=run, args=("long", alice), kwargs={"steps": 1000, "force_task_id": "task(long)"})]
    threads[0].start()
    wait_for("task(long)", "running", alice)
    for name, client in (("b1", bob), ("b2", bob), ("c1", carol), ("d1", dave)):
        extra = {"override_settings": {"sd_model_checkpoint": "broken"}} if name == "d1" else {}
        threads.append(threading.Thread(target=run, args=(name, client), kwargs={"force_task_id": f"task({name})", **extra}))
        threads[-1].start()
        wait_for(f"task({name})", "queued", client)
    # Round-robin: bob's second job waits behind carol's and dave's first. Each client lists its own tasks.
    assert bob.get("/internal/pending-tasks").json()["tasks"] == ["task(b1)", "task(b2)"]
    assert alice.get("/internal/pending-tasks").json()["tasks"] == []
    assert bob.get("/sdapi/v1/progress", params={"id_task": "task(b2)"}).json()["queue_position"] == 4
    poll = carol.post("/internal/progress", json={"id_task": "task(c1)"}).json()
    assert poll["queued"] and poll["textinfo"] == "In queue: 2/4"
    assert bob.post("/internal/progress", json={"id_task": "task(c1)"}).json()["textinfo"] == "Waiting..."
    # Others cannot stop alice's job (to them it does not exist); with no id, bob's interrupt touches only
    # bob's (none running).
    assert bob.post("/sdapi/v1/interrupt", json={"id_task": "task(long)"}).status_code == 404
    assert carol.post("/sdapi/v1/skip", params={"id_task": "task(long)"}).status_code == 404
    assert bob.post("/sdapi/v1/interrupt").json() == {"id_task": None, "ok": False}
    progress = alice.get("/sdapi/v1/progress").json()  # the caller's running job (no id_task)
    while progress["state"]["sampling_step"] < 1:
        progress = alice.get("/sdapi/v1/progress").json()
    assert progress["state"]["job"] == "task(long)" and progress["state"]["sampling_steps"] == 1000
    assert 0 < progress["progress"] < 1 and progress["eta_relative"] > 0
    assert bob.get("/sdapi/v1/progress").json()["current_image"] is None
    assert alice.post("/sdapi/v1/interrupt").json() == {"id_task": "task(long)", "ok": True}
    for thread in threads:
        thread.join(60)
    assert results["long"].status_code == 200  # interrupted: the image as far as it got
    assert len(results["long"].json()["images"]) == 1
    assert json.loads(results["long"].json()["info"])["status"] == "interrupted"
    r = results["d1"]
    assert r.status_code == 500 and "could not load the model" in r.json()["detail"]
    for name in ("b1", "c1", "b2"):
        assert results[name].status_code == 200 and len(results[name].json()["images"]) == 1
    assert results["b1_at"] < results["c1_at"] < results["b2_at"]
    assert alice.post("/sdapi/v1/interrupt", json={"id_task": "task(nope)"}).status_code == 404
    for client in (alice, bob, carol, dave):
        client.close()


def test_api_auth(data_dir):
    flags = parse_flags(["--data-dir", str(data_dir), "--use-cpu", "all", "--api-auth", "ann:s3:cret,bo:pw"])
    srv = Server(SharedState.create(flags))
    try:
        with srv.client() as anon, srv.client(auth=("ann", "wrong")) as wrong, srv.client(auth=("ann", "s3:cret")) as ok:
            for path in ("/sdapi/v1/options", "/sdapi/v1/sd-models", "/sdapi/v1/progress"):
                assert anon.get(path).status_code == 401
                assert wrong.get(path).status_code == 401
                assert ok.get(path).status_code == 200
            assert anon.post("/sdapi/v1/txt2img", json=SMALL).status_code == 401
            assert ok.get("/sdapi/v1/cmd-flags").json()["api_auth"] == "***"
            assert "s3:cret" not in ok.get("/sdapi/v1/cmd-flags").text
            assert anon.get("/internal/ping").status_code == 401  # A1111 leaves /internal open; we do not
            assert ok.get("/internal/ping").status_code == 200
    finally:
        srv.close()


def test_a_model_with_its_own_defaults_fills_the_fields_a_client_leaves_out(tmp_path):
    # As the demo model does with its 128x128: here a tiny model that says 64x64, 3 steps, CFG 4.5, Euler a.
    folder = tmp_path / "models" / "Stable-diffusion"
    write_diffusers_folder(make_tiny_model("sd1"), folder / "plain")
    write_diffusers_folder(make_tiny_model("sd1"), folder / "small")
    defaults = {"width": 64, "height": 64, "steps": 3, "cfg_scale": 4.5, "sampler_name": "Euler a"}
    (folder / "small" / "webui.json").write_text(json.dumps({"defaults": defaults}))
    flags = parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full", "--ckpt", "small"])
    srv = Server(SharedState.create(flags))
    try:
        with srv.client() as http:
            def generate(payload):
                r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, **payload})
                assert r.status_code == 200, r.text
                return decode(r.json()["images"][0]).size, json.loads(r.json()["info"])

            r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False})
            size, info = decode(r.json()["images"][0]).size, json.loads(r.json()["info"])
            assert size == (64, 64) and info["steps"] == 3 and info["cfg_scale"] == 4.5
            assert info["sampler_name"] == "Euler a"
            # The echo says what ran, not A1111's defaults for the fields left out.
            echo = r.json()["parameters"]
            assert (echo["width"], echo["height"], echo["steps"], echo["cfg_scale"]) == (64, 64, 3, 4.5)
            assert echo["sampler_name"] == echo["sampler_index"] == "Euler a" and echo["prompt"] == "x"
            # The model is named with its hash (a diffusers folder's: see models/hashes.py), as in the infotext.
            assert info["sd_model_name"] == "small" and len(info["sd_model_hash"]) == 10
            assert f"Model hash: {info['sd_model_hash']}, Model: small" in info["infotexts"][0]
            assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == f"small [{info['sd_model_hash']}]"
            size, info = generate({"width": 72, "height": 64, "steps": 2, "cfg_scale": 6, "sampler_index": "Euler"})
            assert size == (72, 64) and info["steps"] == 2 and info["cfg_scale"] == 6
            assert info["sampler_name"] == "Euler"
            # The checkpoint override_settings picks is the one whose defaults count.
            r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "save_images": False, "steps": 1,
                                                     "override_settings": {"sd_model_checkpoint": "plain"}})
            assert r.status_code == 200, r.text
            assert decode(r.json()["images"][0]).size == (512, 512)
    finally:
        srv.close()


def test_info_names_the_model_the_job_ran_on(tmp_path):
    # Two checkpoints; the model loaded after the job (another user's choice) must not be reported as its.
    folder = tmp_path / "models" / "Stable-diffusion"
    write_diffusers_folder(make_tiny_model("sd1"), folder / "first")
    write_diffusers_folder(make_tiny_model("sd1", seed=1), folder / "second")
    from webui.api.generation import info
    from webui.generation.params import Txt2ImgParams
    from webui.jobs import JobQueue

    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full"]))
    state.queue = JobQueue(state)
    state.queue.start()
    try:
        job = state.queue.submit("txt2img", Txt2ImgParams(prompt="x", save_images=False, **SMALL), "me",
                                 override_settings={"sd_model_checkpoint": "first"}).wait(120)
        assert job.status == "done", job.error
        state.models.switch("second")
        reported = info(state, job)
        assert reported["sd_model_name"] == "first"
        assert reported["sd_model_hash"] == state.models.find("first").short_hash is not None
        assert reported["sd_model_hash"] != state.models.find("second").short_hash
    finally:
        state.queue.stop()


def test_a1111_hires_defaults_are_accepted(http):
    # What A1111's own clients send for "the first pass's sampler": one validation for API, UI and engine.
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "save_images": False, "enable_hr": True, "hr_scale": 1.25,
                                             "hr_second_pass_steps": 1, "hr_sampler_name": "Use same sampler",
                                             "hr_scheduler": "Use same scheduler", "denoising_strength": 0.5})
    assert r.status_code == 200, r.text
    assert decode(r.json()["images"][0]).size == (80, 80)
    r = http.post("/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_sampler_name": "Nope"})
    assert r.status_code == 400 and "Nope" in r.json()["detail"]


def test_a_requests_s_min_uncond_applies_to_its_job(http):
    body = {"prompt": "a cat", **SMALL, "s_min_uncond": 5}
    reply = http.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    assert "NGMS: 5" in json.loads(reply.json()["info"])["infotexts"][0]
    plain = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", **SMALL})
    assert "NGMS" not in json.loads(plain.json()["info"])["infotexts"][0]  # the setting (0) again for the next job
