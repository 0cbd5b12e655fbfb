"""Start the WebUI: one FastAPI app on one port with the Gradio UI, the REST API, or both.

`python launch.py [A1111 flags]` ends up here. The page answers at once: the model loads
in the background, and the first job waits for it.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .flags import parse_credentials, parse_flags
from .state import SharedState

log = logging.getLogger("webui")


def create_app(state: SharedState) -> FastAPI:
    """The whole server for these flags; the queue must already be attached to `state`."""
    from .api import register_api, register_internal

    flags = state.flags
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
        return app
    register_internal(app, state)

    import gradio as gr

    from .ui import build_ui

    logins = parse_credentials(flags.gradio_auth, flags.gradio_auth_path)
    return gr.mount_gradio_app(
        app, build_ui(state), path=flags.subpath or "/", auth=list(logins.items()) or None,
    )


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

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    flags = parse_flags(argv)
    for flag in flags.ignored:
        log.info("%s: accepted for A1111 compatibility; it changes nothing here", flag)
    state = SharedState.create(flags)
    if not state.models.checkpoints():
        log.warning("no checkpoint found in %s: put a .safetensors file there and press refresh",
                    state.models.models_dir)
    state.queue = JobQueue(state)
    state.queue.start()
    _load_model_in_background(state)
    app = create_app(state)

    host = "0.0.0.0" if flags.listen else (flags.server_name or "127.0.0.1")
    port = flags.port or (7861 if flags.nowebui else 7860)
    scheme = "https" if flags.tls_keyfile and flags.tls_certfile else "http"
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    print(f"Running on {scheme}://{shown}:{port}{flags.subpath or ''}/ "
          f"(ready in {time.perf_counter() - started:.1f} s)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, ssl_keyfile=flags.tls_keyfile, ssl_certfile=flags.tls_certfile,
                    timeout_keep_alive=flags.timeout_keep_alive, log_level="warning")
    finally:
        state.queue.stop()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
