"""Issue 20, findings 1-4, over real HTTP on real servers (and the login page in headless Chromium):

1. roles: with a login only the --admin-users manage extensions, restart the server and change
   server-wide settings, checked in the Gradio event handlers themselves; other users' quick
   settings apply to their own session;
2. /internal behind the login, progress and previews only for the job's owner, task ids never reused;
3. nothing about the instance in the page before login; the docs behind the login;
4. login throttling (UI /login and HTTP Basic) per user name and per address, on an injected clock.
"""

import asyncio
import base64
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

import webui.jobs as jobs
from checkpoint_files import write_diffusers_folder
from extension_files import good_extension, write
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.app import create_app, load_flags
from webui.auth import FIRST_DELAY, FORGET_AFTER, FREE_FAILURES, MAX_DELAY, Caller, LoginThrottle, Throttled
from webui.extensions import manager
from webui.extensions.loader import start_extensions
from webui.flags import parse_flags
from webui.generation.params import Txt2ImgParams
from webui.jobs import JobQueue
from webui.options import Options
from webui.state import SharedState
from webui.ui.common import Sessions, choose_setting

CHROMIUM = "/usr/bin/chromium"
# What an anonymous visitor must not learn: endpoint names, the checkpoint's and an extension's name.
SECRETS = ("install_from", "apply_and_restart", "secretckpt", "goodext")


class Clock:
    """An injected clock for the login throttle: tests move time instead of waiting."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The whole WebUI (UI + API) with a UI login: ann is an admin, bob is not."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    data = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "secretckpt")
    good_extension(data / "extensions")  # adds /goodext/hello on app_started
    flags, extensions = load_flags(["--data-dir", str(data), "--use-cpu", "all", "--api",
                                    "--gradio-auth", "ann:apw,bob:bpw", "--admin-users", "ann",
                                    "--cors-allow-origins", "http://client.example"])
    state = SharedState.create(flags)
    start_extensions(state, extensions)
    app = create_app(state)
    restarts = []
    state.restart = lambda: restarts.append("restart")  # app.main's restart, recorded instead
    with LiveServer(app) as live:
        yield live.url, state, data, restarts, app
    state.queue.stop()


@pytest.fixture(autouse=True)
def clock(request):
    """A fresh throttle on an injected clock for every test (all clients share 127.0.0.1)."""
    fake = Clock()
    for name in ("shared", "api_server"):
        if name in request.fixturenames:
            request.getfixturevalue(name)[1].access.throttle = LoginThrottle(clock=fake)
    return fake


def login(url: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    r = client.post("/login", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return client


class UIUser:
    """A user logged in through /login who calls the page's event handlers over plain HTTP (Gradio's
    /gradio_api/call API), as a page's script could, whatever the page shows."""

    def __init__(self, url: str, user: str, password: str):
        self.http = login(url, user, password)

    def call(self, endpoint: str, *data):
        r = self.http.post(f"/gradio_api/call{endpoint}", json={"data": list(data)})
        assert r.status_code == 200, r.text
        events = self.http.get(f"/gradio_api/call{endpoint}/{r.json()['event_id']}").text
        kind, payload = events.strip().split("\n")[-2:]  # the last event: "event: complete", "data: [...]"
        assert kind == "event: complete", events
        return json.loads(payload.removeprefix("data: "))

    def parameters(self, endpoint: str) -> list[dict]:
        return self.http.get("/gradio_api/info").json()["named_endpoints"][endpoint]["parameters"]

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def users(shared):
    """ann (an admin) and bob (not one), logged in to the shared server."""
    ann, bob = UIUser(shared[0], "ann", "apw"), UIUser(shared[0], "bob", "bpw")
    yield ann, bob
    ann.close()
    bob.close()


# -- 1. roles ------------------------------------------------------------------------------------
def local_extension(root: Path, name: str) -> Path:
    """A plain folder whose install.py leaves a mark when it runs."""
    marker = root / f"{name}-install-ran"
    write(root / name, {"install.py": f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n",
                        "scripts/nothing.py": "# a script\n"})
    return marker


def test_a_non_admin_cannot_install_an_extension_through_the_ui(shared, users, tmp_path):
    url, state, data, _, _ = shared
    ann, bob = users
    marker = local_extension(tmp_path, "evil")
    result = bob.call("/install_from", str(tmp_path / "evil"), "", "")[-1]
    assert "Only admins can manage extensions" in result and "logged in as bob" in result
    assert not marker.exists() and not (data / "extensions" / "evil").exists()
    # The admin can, through the same endpoint: the refusal above is the role, not a broken install.
    assert "Installed evil" in ann.call("/install_from", str(tmp_path / "evil"), "", "")[-1]
    assert marker.read_text() == "ran" and (data / "extensions" / "evil").is_dir()
    # Uninstalling is the admin's too; the Extensions tab tells bob so when he opens it.
    assert "Only admins" in bob.call("/remove", "goodext")[-1]
    assert (data / "extensions" / "goodext").is_dir()
    assert "Only admins" in bob.call("/opened")[-1]
    assert ann.call("/opened")[-1] == ""


def test_only_an_admin_applies_and_restarts(shared, users):
    url, state, data, restarts, _ = shared
    ann, bob = users
    every = [ext.name for ext in state.extensions]
    note = bob.call("/apply_and_restart", [], "none", [])[-2]
    assert "Only admins" in note and restarts == []
    assert state.options["disabled_extensions"] == []
    note = ann.call("/apply_and_restart", every, "none", [])[-2]
    assert "Restarting" in note and restarts == ["restart"]


def settings(user: UIUser, label: str, value) -> list:
    """The Settings tab's /save arguments: every field as the page shows it, the one labelled `label` changed."""
    return [value if p["label"] == label else p["parameter_default"] for p in user.parameters("/save")]


def test_server_wide_settings_are_for_admins(shared, users):
    url, state, data, _, _ = shared
    ann, bob = users
    assert "Only admins can change the settings" in bob.call("/save", *settings(bob, "Eta for DDIM", 0.25))[0]
    assert state.options["eta_ddim"] == 0.0
    assert "1 settings changed" in ann.call("/save", *settings(ann, "Eta for DDIM", 0.25))[0]
    assert state.options["eta_ddim"] == 0.25
    # The API: POST /options is the admin's; bob still sets his own job's values with override_settings.
    with httpx.Client(base_url=url, auth=("bob", "bpw")) as api:
        r = api.post("/sdapi/v1/options", json={"eta_ddim": 0.5})
        assert r.status_code == 403 and "override_settings" in r.json()["detail"]
    with httpx.Client(base_url=url, auth=("ann", "apw")) as api:
        assert api.post("/sdapi/v1/options", json={"eta_ddim": 0.0}).status_code == 200
    assert state.options["eta_ddim"] == 0.0


def test_a_non_admins_checkpoint_choice_is_their_own(shared, users):
    url, state, data, _, _ = shared
    ann, bob = users
    title = state.models.checkpoints()[0].title
    bob.call("/choose", title)  # the checkpoint list at the top of the page
    bob.call("/choose_1", "None")  # SD VAE
    assert state.options["sd_model_checkpoint"] == "" and state.options["sd_vae"] == "Automatic"
    ann.call("/choose", title)
    assert state.options["sd_model_checkpoint"] == title  # the admin's choice is the server's
    state.options.update({"sd_model_checkpoint": ""})


def test_a_non_admins_quick_settings_go_with_their_own_jobs(tmp_path):
    """What the checkpoint and VAE lists record for a non-admin (above) is what their session's jobs run with."""
    flags = parse_flags(["--data-dir", str(tmp_path), "--gradio-auth", "ann:apw,bob:bpw", "--admin-users", "ann"])
    state = SharedState(flags, Options(tmp_path / "config.json"), None)
    state.queue = JobQueue(state)  # not started: the jobs wait, their settings can be read
    sessions = Sessions(state)
    bob, bobs_other_tab = (SimpleNamespace(username="bob", session_hash=h, headers={}) for h in ("s1", "s2"))
    choose_setting(state, sessions, bob, "sd_model_checkpoint", "tiny [0123456789]")
    choose_setting(state, sessions, bob, "sd_vae", "None")
    job = sessions.submit("txt2img", "txt2img", Txt2ImgParams(prompt="x"), bob)
    assert job.overrides == {"sd_model_checkpoint": "tiny [0123456789]", "sd_vae": "None"}
    assert sessions.submit("txt2img", "txt2img", Txt2ImgParams(prompt="x"), bobs_other_tab).overrides == {}
    assert state.options["sd_model_checkpoint"] == "" and state.options["sd_vae"] == "Automatic"
    ann = SimpleNamespace(username="ann", session_hash="s3", headers={})
    choose_setting(state, sessions, ann, "sd_vae", "None")
    assert state.options["sd_vae"] == "None"  # an admin's choice is the server's


def test_extension_access_without_a_login(tmp_path):
    """A1111's rule stays (loopback only, unless --enable-insecure-extension-access); a request that came
    through a reverse proxy is not taken for a local one."""
    state = SharedState(parse_flags(["--data-dir", str(tmp_path)]), None, None)
    assert manager.access_allowed(state, Caller())
    proxied = Caller(proxied=True)
    with pytest.raises(manager.ManagerError, match="reverse proxy"):
        manager.install(state, str(tmp_path / "any"), caller=proxied)
    insecure = SharedState(parse_flags(["--data-dir", str(tmp_path), "--enable-insecure-extension-access"]), None, None)
    assert manager.access_allowed(insecure, proxied)
    lan = SharedState(parse_flags(["--data-dir", str(tmp_path), "--listen"]), None, None)
    assert manager.access_refusal(lan, Caller()) == manager.ACCESS_DENIED


def test_a_login_without_admin_users_refuses_management(tmp_path):
    state = SharedState(parse_flags(["--data-dir", str(tmp_path), "--gradio-auth", "ann:apw"]), None, None)
    with pytest.raises(manager.ManagerError, match="--admin-users"):
        manager.install(state, str(tmp_path / "any"), caller=Caller("ann"))
    assert not (tmp_path / "extensions").exists()


# -- 2. /internal and progress -------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """The API alone with --api-auth users alice and bob, over a tiny model."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    data = tmp_path_factory.mktemp("api")
    write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all", "--precision", "full",
                                            "--api-auth", "alice:apw,bob:bpw"]))
    app = FastAPI()
    register_api(app, state)
    with LiveServer(app) as live:
        yield live.url, state
    state.queue.stop()


SMALL = {"width": 64, "height": 64}
UNKNOWN_POLL = {"active": False, "queued": False, "completed": False, "progress": None, "eta": None,
                "live_preview": None, "id_live_preview": -1, "textinfo": "Waiting..."}


def test_internal_routes_progress_and_previews_are_the_owners(api_server):
    url, state = api_server
    with httpx.Client(base_url=url) as anonymous:
        for method, path in (("GET", "/internal/pending-tasks"), ("POST", "/internal/progress"),
                             ("GET", "/internal/ping")):
            assert anonymous.request(method, path, json={"id_task": "x"}).status_code == 401, path
    alice = httpx.Client(base_url=url, auth=("alice", "apw"), timeout=120)
    bob = httpx.Client(base_url=url, auth=("bob", "bpw"), timeout=30)
    results = {}
    state.queue.stop()  # the worker pauses, so alice's job waits in the queue while bob looks
    thread = threading.Thread(target=lambda: results.setdefault("a1", alice.post(
        "/sdapi/v1/txt2img", json={**SMALL, "steps": 20, "force_task_id": "task(a1)"})))
    thread.start()
    while alice.get("/internal/pending-tasks").json()["tasks"] != ["task(a1)"]:
        pass  # alice sees her waiting task...
    poll = {"id_task": "task(a1)", "live_preview": True, "id_live_preview": -1}
    assert alice.post("/internal/progress", json=poll).json()["queued"] is True
    assert alice.get("/sdapi/v1/progress").json()["id_task"] == "task(a1)"  # her own job, without an id

    # ...bob sees nothing of alice's: no task ids, no progress, not even that the id exists.
    assert bob.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}
    assert bob.post("/internal/progress", json=poll).json() == UNKNOWN_POLL
    assert bob.get("/sdapi/v1/progress").json()["status"] is None  # bob has no job: not alice's either
    assert bob.post("/sdapi/v1/interrupt", json={"id_task": "task(a1)"}).status_code == 404
    # Task ids are never reused: not while alice's job waits...
    r = bob.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 1, "force_task_id": "task(a1)"})
    assert r.status_code == 409 and "never reused" in r.json()["detail"]
    state.queue.start()
    thread.join(120)
    assert results["a1"].status_code == 200

    # Finished, with a live preview on record: alice gets it, bob gets what an unknown id gets.
    mine = alice.post("/internal/progress", json=poll).json()
    assert mine["completed"] and mine["live_preview"].startswith("data:image/png;base64,")
    assert bob.post("/internal/progress", json=poll).json() == UNKNOWN_POLL
    theirs = bob.get("/sdapi/v1/progress", params={"id_task": "task(a1)"}).json()
    unknown = bob.get("/sdapi/v1/progress", params={"id_task": "task(none)"}).json()
    assert {**theirs, "id_task": None} == {**unknown, "id_task": None} and theirs["current_image"] is None
    assert alice.get("/sdapi/v1/progress", params={"id_task": "task(a1)"}).json()["current_image"]
    # ...nor after it finished, by anyone: alice's poll keeps showing her own job.
    for client in (bob, alice):
        r = client.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 1, "force_task_id": "task(a1)"})
        assert r.status_code == 409
    assert alice.post("/internal/progress", json=poll).json() == mine
    alice.close()
    bob.close()


def test_used_task_ids_are_remembered_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "KEEP_FINISHED", 2)
    monkeypatch.setattr(jobs, "KEEP_USED_IDS", 5)
    queue = JobQueue(SharedState(parse_flags(["--data-dir", str(tmp_path)]), None, None))  # not started
    for i in range(8):
        queue.submit("txt2img", Txt2ImgParams(prompt="x"), "o", f"task({i})")
        assert queue.interrupt(f"task({i})", "o")  # cancelled while waiting: finished
    with queue._cond:
        queue._forget_old()
    assert queue.get("task(4)") is None  # the job is forgotten (KEEP_FINISHED)...
    with pytest.raises(ValueError, match="never reused"):
        queue.submit("txt2img", Txt2ImgParams(prompt="x"), "p", "task(4)")  # ...its id is not
    assert len(queue._used_ids) == 5  # and that memory does not grow
    with pytest.raises(ValueError, match="at most"):
        queue.submit("txt2img", Txt2ImgParams(prompt="x"), "p", "t" * 1000)


# -- 3. nothing before login ---------------------------------------------------------------------
def get_routes(routes, prefix: str = "") -> list[str]:
    """Every parameterless GET path of a router, through FastAPI's included routers."""
    paths = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            paths += get_routes(included.routes, prefix + route.include_context.prefix)
        elif "GET" in (getattr(route, "methods", None) or ()) and "{" not in route.path:
            paths.append(prefix + route.path)
    return paths


def test_anonymous_visitors_learn_nothing_about_the_instance(shared):
    url, state, data, _, app = shared
    gradio_paths = get_routes(app.state.gradio_mount.app.routes)
    assert {"/", "/gradio_api/runs", "/gradio_api/info", "/config"} <= set(gradio_paths)  # the walk found them
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        for path in gradio_paths:
            r = anonymous.get(path)
            assert not any(secret in r.text for secret in SECRETS), path
        page = anonymous.get("/")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
        # Our own routes: the docs, /internal, the API, an extension's route.
        for path in ("/docs", "/redoc", "/openapi.json", "/internal/ping", "/sdapi/v1/sd-models", "/goodext/hello"):
            r = anonymous.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic", path
    # Logged in, the same page does describe the instance (so the checks above could fail).
    bob = login(url, "bob", "bpw")
    page = bob.get("/").text
    assert all(secret in page for secret in SECRETS)
    for path in ("/docs", "/openapi.json", "/internal/ping", "/goodext/hello", "/sdapi/v1/sd-models"):
        assert bob.get(path).status_code == 200, path  # a UI session will do (no --api-auth here)
    bob.close()
    with httpx.Client(base_url=url, auth=("bob", "bpw")) as basic:
        assert basic.get("/openapi.json").status_code == 200
    # A browser's CORS preflight carries no credentials: it is answered, and the request itself is not.
    with httpx.Client(base_url=url, headers={"Origin": "http://client.example"}) as browser:
        r = browser.options("/sdapi/v1/options", headers={"Access-Control-Request-Method": "GET"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://client.example"
        assert browser.get("/sdapi/v1/options").status_code == 401


# -- 4. login throttling -------------------------------------------------------------------------
def test_ui_login_is_throttled_per_user_and_address(shared, clock):
    url, state, data, _, _ = shared
    with httpx.Client(base_url=url) as client:
        def try_login(user, password):
            return client.post("/login", data={"username": user, "password": password})

        for _ in range(FREE_FAILURES + 1):
            assert try_login("bob", "wrong").status_code == 400
        # Locked now: even the right password is refused, with the time to wait.
        r = try_login("bob", "bpw")
        assert r.status_code == 429 and r.headers["retry-after"] == str(int(FIRST_DELAY))
        assert "Too many failed logins" in r.json()["detail"]
        clock.now += FIRST_DELAY
        assert try_login("bob", "bpw").status_code == 200
        # The address is still marked: guessing other names from it is locked as soon as it fails again.
        assert try_login("nobody", "x").status_code == 400
        assert try_login("ann", "apw").status_code == 429
        clock.now += FIRST_DELAY * 2
        assert try_login("ann", "apw").status_code == 200


def test_basic_auth_is_throttled_and_the_delay_grows(api_server, clock):
    url, state = api_server
    wrong = httpx.Client(base_url=url, auth=("alice", "wrong"))
    right = httpx.Client(base_url=url, auth=("alice", "apw"))
    for _ in range(FREE_FAILURES):
        assert wrong.get("/sdapi/v1/options").status_code == 401
    waits = []
    for _ in range(4):  # each failure past the free ones doubles the lock
        assert wrong.get("/sdapi/v1/options").status_code == 401
        r = right.get("/sdapi/v1/options")
        assert r.status_code == 429
        waits.append(int(r.headers["retry-after"]))
        clock.now += waits[-1]
    assert waits == [1, 2, 4, 8]
    assert right.get("/sdapi/v1/options").status_code == 200
    # /internal checks credentials through the same throttle, where this address has a record already.
    assert wrong.get("/internal/ping").status_code == 401
    r = right.get("/internal/ping")
    assert r.status_code == 429 and r.headers["retry-after"] == "16"
    wrong.close()
    right.close()


def test_throttle_caps_the_delay_forgets_and_bounds_its_memory():
    clock = Clock()
    throttle = LoginThrottle(clock=clock, max_keys=100)
    for _ in range(FREE_FAILURES + 20):
        clock.now += MAX_DELAY  # each guess waits out the lock the one before set
        assert throttle.attempt("victim", "10.0.0.1", lambda: False) is False
    assert throttle.wait("victim", None) == MAX_DELAY  # the delay stops growing
    with pytest.raises(Throttled):
        throttle.attempt("victim", "10.9.9.9", lambda: True)  # locked: not even checked
    clock.now += FORGET_AFTER + 1
    assert throttle.attempt("victim", "10.0.0.2", lambda: False) is False  # an old record starts over
    assert throttle.wait("victim", None) == 0
    for i in range(1000):  # a spray of user names from many addresses
        assert throttle.attempt(f"user{i}", f"10.1.{i // 250}.{i % 250}", lambda: False) is False
    assert len(throttle) <= 100


# -- the login page in a browser -----------------------------------------------------------------
@pytest.mark.slow  # see pyproject.toml
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")
@pytest.mark.slow
def test_the_login_page_works_without_the_api_description(shared):
    from playwright.sync_api import expect, sync_playwright

    url, state, data, _, _ = shared
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}/")
            assert not any(secret in page.content() for secret in SECRETS)
            page.locator("input[type=password]").wait_for()
            page.locator("input:not([type=password])").first.fill("bob")
            page.locator("input[type=password]").fill("bpw")
            page.locator("button", has_text="Login").click()
            page.locator("#txt2img_prompt textarea").wait_for()
            # bob may apply styles but not save them: no Save style panel for him (the server refuses anyway)
            expect(page.locator("#txt2img_style_save_panel")).to_have_count(0)
            expect(page.locator("#img2img_style_save_panel")).to_have_count(0)
            page.locator("#tab_extensions-button").click()
            expect(page.locator("#extensions_access")).to_contain_text("Only admins can manage extensions")
        finally:
            browser.close()


def test_only_admins_write_the_shared_styles(shared, users):
    """With a login and --admin-users, bob can apply styles but not save or overwrite them, whatever the page
    shows: the Gradio event itself refuses, and tells him why."""
    url, state, data, _, _ = shared
    ann, bob = users
    styles = data / "styles.csv"
    ann.call("/save_current", "house", "a house", "ugly", [])  # the admin saves one
    before = styles.read_text(encoding="utf-8")
    assert "house,a house,ugly" in before
    for name in ("house", "bobs"):  # overwrite one, add one
        r = bob.http.post("/gradio_api/call/save_current", json={"data": [name, "bob's prompt", "", []]})
        events = bob.http.get(f"/gradio_api/call/save_current/{r.json()['event_id']}").text
        assert events.startswith("event: error") and "Only admins can save styles" in events and "logged in as bob" in events, events
    assert styles.read_text(encoding="utf-8") == before
    # Applying the admin's style is everyone's.
    with httpx.Client(base_url=url, auth=("bob", "bpw"), timeout=120) as api:
        r = api.post("/sdapi/v1/txt2img", json={"prompt": "x", "styles": ["house"], "steps": 1, "width": 64,
                                                "height": 64, "save_images": False})
        assert r.status_code == 200, r.text[:300]
        assert json.loads(r.json()["info"])["prompt"] == "x, a house"


@pytest.mark.parametrize("flags, may", [
    ([], True),  # no login: A1111's behaviour, everyone
    (["--gradio-auth", "ann:apw,bob:bpw"], True),  # a login, no admins: every user, as before
    (["--gradio-auth", "ann:apw,bob:bpw", "--admin-users", "ann"], False),
    (["--api-auth", "ann:apw,bob:bpw", "--admin-users", "ann"], False),
])
def test_who_writes_styles(tmp_path, flags, may):
    from webui.styles import StylesRefused, read_styles, save_style

    state = SharedState(parse_flags(["--data-dir", str(tmp_path), *flags]), None, None)
    save_style(state, "ann's", "a", "b", Caller("ann") if "--admin-users" in flags else Caller())
    if may:
        save_style(state, "bob's", "c", "d", Caller("bob"))
    else:
        with pytest.raises(StylesRefused, match="Only admins can save styles.*logged in as bob"):
            save_style(state, "bob's", "c", "d", Caller("bob"))
        with pytest.raises(StylesRefused, match="not logged in"):
            save_style(state, "ann's", "c", "d")
    assert list(read_styles(state)) == ["ann's", "bob's"][:2 if may else 1]


# -- WebSockets: an extension's @app.websocket route is behind the login too ---------------------------------------
WS_EXTENSION = '''\
from fastapi import WebSocket
from modules import script_callbacks


def started(demo, app):
    @app.websocket("/wsext/hello")
    async def hello(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text(f"hello {websocket.state.user}")
        await websocket.close()


script_callbacks.on_app_started(started)
'''


def test_extension_websockets_need_a_login(tmp_path):
    """Before, the guard was an "http" middleware: a WebSocket handshake passed it without credentials. Starlette's
    TestClient speaks WebSocket to the whole app, middleware included (no WebSocket library is installed for a
    real server here)."""
    from starlette.testclient import TestClient, WebSocketDenialResponse

    write(tmp_path / "extensions" / "wsext", {"scripts/ws.py": WS_EXTENSION})
    flags, extensions = load_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--gradio-auth", "ann:apw",
                                    "--api-auth", "api:kpw"])
    state = SharedState.create(flags)
    start_extensions(state, extensions)
    try:
        client = TestClient(create_app(state))
        for headers in ({}, {"authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}):
            with pytest.raises(WebSocketDenialResponse) as denied:
                with client.websocket_connect("/wsext/hello", headers=headers):
                    pass
            assert denied.value.status_code == 401 and "Log in first" in denied.value.text
        for user, password in (("ann", "apw"), ("api", "kpw")):  # a UI or an API login, as for HTTP routes
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
            with client.websocket_connect("/wsext/hello", headers={"authorization": f"Basic {credentials}"}) as ws:
                assert ws.receive_text() == f"hello {user}"
        assert client.post("/login", data={"username": "ann", "password": "apw"}).status_code == 200
        with client.websocket_connect("/wsext/hello") as ws:  # the UI session cookie, as a page's script sends it
            assert ws.receive_text() == "hello ann"
        # A server without the denial-response extension (uvicorn's websockets) gets a close: a bare 403.
        sent = []

        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "path": "/wsext/hello", "root_path": "", "headers": [], "query_string": b"",
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "scheme": "ws", "subprotocols": []}
        asyncio.run(client.app(scope, receive, send))
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    finally:
        state.queue.stop()
