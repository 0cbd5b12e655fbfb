"""Start the WebUI: one FastAPI app on one port with the Gradio UI, the REST API, or both.

`python launch.py [A1111 flags]` ends up here. The page answers at once: the model loads
in the background, and the first job waits for it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from .extensions.installer import run_installers, stamp_file
from .extensions.loader import Extension, discover, run_preloads, start_extensions
from .flags import build_parser, parse_flags
from .state import SharedState

log = logging.getLogger("webui")


def load_flags(argv: list[str]) -> tuple[argparse.Namespace, list[Extension]]:
    """The flags and the extensions. Extensions are found from an early parse of `argv` (the data
    folder, the settings file, --disable-*-extensions); their preload.py may add flags; then
    `argv` is parsed for real, so `shared.cmd_opts.<an extension's flag>` works."""
    early = parse_flags(argv, known_only=True)
    extensions = discover(early)
    parser = build_parser()
    run_preloads(extensions, parser, early)
    return parse_flags(argv, parser), extensions


def create_app(state: SharedState) -> FastAPI:
    """The whole server for these flags; the queue must already be attached to `state`, and the
    extensions loaded (`start_extensions`) if there are to be any. Fires on_app_started."""
    from .api import register_api, register_internal

    flags = state.flags
    from .postprocessing.model_upscalers import refresh_model_upscalers

    # Upscaler files in A1111's folders become upscalers for the hires fix, the Extras tab and the API.
    refresh_model_upscalers(flags.models_dir, getattr(state.models.slot, "device", "cpu"))
    app = FastAPI(title="Stable Diffusion WebUI", docs_url="/docs", redoc_url="/redoc")
    if flags.cors_allow_origins or flags.cors_allow_origins_regex:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=flags.cors_allow_origins.split(",") if flags.cors_allow_origins else [],
            allow_origin_regex=flags.cors_allow_origins_regex,
            allow_credentials=True, allow_methods=["*"], allow_headers=["*"],
        )
    if flags.api or flags.nowebui:
        register_api(app, state)
    if flags.nowebui:
        state.callbacks.run("ui_settings")  # no Settings page, but extensions' options must still exist
        return _app_started(state, app)
    register_internal(app, state)

    import gradio as gr

    from .extensions import assets
    from .ui import build_ui

    from .extensions.files import register_file_route

    register_file_route(app, state, (flags.subpath or "").rstrip("/"))  # A1111's file= route, for extensions' pages
    state.demo = build_ui(state)
    access = state.access  # the logins, checked (and throttled) by auth.Access
    app = gr.mount_gradio_app(
        app, state.demo, path=flags.subpath or "/", auth=access.ui_password_ok if access.ui_users else None,
        head=assets.head_html(state), allowed_paths=assets.allowed_files(state),
    )
    mount = app.router.routes[-1]  # mount_gradio_app adds the Gradio app last
    app.state.gradio_mount = mount  # the guard (auth.install_guard) leaves its routes to Gradio's login
    access.session_user = lambda request: _session_user(mount.app, request)
    return _app_started(state, app)


def _session_user(gradio_app, request) -> str | None:
    """The user a request's Gradio login cookie belongs to (Gradio keeps the tokens), or None."""
    for name in (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}"):
        user = gradio_app.tokens.get(request.cookies.get(name))
        if user is not None:
            return user
    return None


def _app_started(state: SharedState, app: FastAPI) -> FastAPI:
    state.callbacks.run("app_started", state.demo, app)
    # Gradio mounted at "/" answers every path: the routes extensions just added go before it.
    routes = app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, Mount)] + [r for r in routes if isinstance(r, Mount)]
    return app


def _load_model_in_background(state: SharedState) -> None:
    def load() -> None:
        started = time.perf_counter()
        try:
            model = state.models.current()
            log.info("model %s loaded in %.1f s", model.name, time.perf_counter() - started)
        except Exception as error:  # the UI stays up; jobs report the problem to their owners
            log.warning("no model loaded at start: %s", error)

    threading.Thread(target=load, name="model-loader", daemon=True).start()


def main(argv: list[str]) -> int:
    import uvicorn

    from .jobs import JobQueue
    from .runtime import apply_attention_flags
    from .workers import WorkerSetupError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    flags, extensions = load_flags(argv)
    for flag in flags.ignored:
        log.info("%s: accepted for A1111 compatibility; it changes nothing here", flag)
    apply_attention_flags(flags)
    if not flags.skip_install:
        run_installers(extensions, stamp_file(flags))
    state = SharedState.create(flags)
    if not state.models.checkpoints():
        log.warning("no checkpoint found in %s: put a .safetensors file there and press refresh",
                    state.models.models_dir)
    state.queue = JobQueue(state)
    try:
        state.queue.start()
    except WorkerSetupError as error:  # --ray without Ray installed, a cluster that cannot be reached
        print(f"Cannot start the generation workers: {error}", file=sys.stderr)
        return 2
    start_extensions(state, extensions)
    if all(worker.in_process for worker in state.queue.workers):  # Ray workers load their own models
        _load_model_in_background(state)  # after the extensions: their on_model_loaded callbacks see it
    app = create_app(state)

    host = "0.0.0.0" if flags.listen else (flags.server_name or "127.0.0.1")
    port = flags.port or (7861 if flags.nowebui else 7860)
    scheme = "https" if flags.tls_keyfile and flags.tls_certfile else "http"
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    print(f"Running on {scheme}://{shown}:{port}{flags.subpath or ''}/ "
          f"(ready in {time.perf_counter() - started:.1f} s)", flush=True)
    # Open page connections (Gradio's heartbeat streams) would hold a graceful shutdown forever.
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, ssl_keyfile=flags.tls_keyfile, ssl_certfile=flags.tls_certfile,
        timeout_keep_alive=flags.timeout_keep_alive, timeout_graceful_shutdown=3, log_level="warning"))
    restarting = threading.Event()

    def restart() -> None:  # the Extensions tab's "Apply and restart UI"; the reply goes out first
        state.callbacks.run("before_reload")
        restarting.set()
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # pages' streams are cut on purpose
        threading.Timer(0.5, setattr, (server, "should_exit", True)).start()

    state.restart = restart
    try:
        server.run()
    finally:
        state.queue.stop()
    if restarting.is_set():
        print("Restarting the WebUI", flush=True)
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
