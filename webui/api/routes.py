"""`register_api(app, state)`: A1111's /sdapi/v1 routes and the /internal routes its UI polls.

Every /sdapi route needs HTTP Basic auth when a login is set (--api-auth, else the UI's users);
/internal, the docs and every other route of ours are behind the login too (auth.install_guard;
A1111 leaves them open). Changing server-wide settings is for admins (auth.Access). Errors come
back in A1111's shape `{error, detail, body, errors}` with a
4xx naming the field for bad input, and every response carries `X-Process-Time`.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..auth import Caller, install_guard
from ..extensions.manager import extension_entries
from ..jobs import JobQueue
from ..state import SharedState
from . import info
from .common import BasicAuth, caller, decode_image
from .errors import hide_paths
from .extras import register_extras
from .generation import run_generation
from .interrogate import register_interrogate
from .models import (
    Img2ImgRequest, ImageResponse, InternalProgressRequest, InternalProgressResponse, PNGInfoRequest,
    PNGInfoResponse, ProgressResponse, Txt2ImgRequest,
)
from .progress import internal_progress, sdapi_progress, stop_job, task_id_from

log = logging.getLogger(__name__)


def _error(status: int, error: str, detail, errors="", headers=None) -> JSONResponse:
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": error, "detail": detail, "body": "", "errors": errors})


def _install_error_handlers(app: FastAPI, state: SharedState) -> None:
    # Error texts name no absolute server path (api/errors.py): a data-folder path shows relative to it.
    public = lambda detail: hide_paths(detail, state.flags.data_dir) if isinstance(detail, str) else detail  # noqa: E731

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, type(exc).__name__, public(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # Name each field: "body.steps: Input should be a valid integer".
        problems = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
                    for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
        return _error(422, "RequestValidationError", detail, problems)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        log.exception("API error on %s", request.url.path)
        return _error(500, type(exc).__name__, public(str(exc)))


def _install_timing(app: FastAPI, log_requests: bool) -> None:
    @app.middleware("http")
    async def process_time(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        response.headers["X-Process-Time"] = f"{elapsed:.4f}"
        if log_requests and request.url.path.startswith("/sdapi"):
            log.info("API %s %s %s %.3fs", request.method, request.url.path, response.status_code, elapsed)
        return response


def _prepare(app: FastAPI, state: SharedState) -> None:
    """Once per app: the queue (created and started if `state` has none), error shape, timing."""
    if state.queue is None:
        state.queue = JobQueue(state)
    state.queue.start()
    if not getattr(app.state, "webui_api_prepared", False):
        app.state.webui_api_prepared = True
        _install_error_handlers(app, state)
        _install_timing(app, bool(getattr(state.flags, "api_log", False)))
        install_guard(app, state.access)


def register_api(app: FastAPI, state: SharedState, internal: bool = True) -> None:
    """Add /sdapi/v1 to `app` (and the /internal routes unless `internal` is False)."""
    _prepare(app, state)
    if internal:
        register_internal(app, state)
    api = APIRouter(prefix="/sdapi/v1", dependencies=[Depends(BasicAuth(state.access))])

    @api.post("/txt2img", response_model=ImageResponse)
    async def txt2img(req: Txt2ImgRequest, request: Request):
        return await run_generation(state, req, "txt2img", caller(request), request)

    @api.post("/img2img", response_model=ImageResponse)
    async def img2img(req: Img2ImgRequest, request: Request):
        return await run_generation(state, req, "img2img", caller(request), request)

    @api.post("/png-info", response_model=PNGInfoResponse)
    def png_info(req: PNGInfoRequest):
        from ..generation.images import read_infotext
        from ..generation.infotext import parse_infotext

        image = decode_image(req.image, "image")
        text = read_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if isinstance(v, (str, int, float)) and k != "parameters"}
        parameters = parse_infotext(text) if text else {}
        if text:  # extensions' on_infotext_pasted may add or change values, as in A1111
            state.callbacks.run("infotext_pasted", text, parameters)
        return {"info": text, "items": items, "parameters": parameters}

    @api.get("/progress", response_model=ProgressResponse)
    def progress(request: Request, skip_current_image: bool = False, id_task: str | None = None):
        return sdapi_progress(state, caller(request), id_task, skip_current_image)

    @api.post("/interrupt")
    async def interrupt(request: Request):
        return stop_job(state, caller(request), await task_id_from(request), "interrupt")

    @api.post("/skip")
    async def skip(request: Request):
        return stop_job(state, caller(request), await task_id_from(request), "skip")

    @api.get("/options")
    def get_options():
        return {**state.options.as_dict(), "sd_model_checkpoint": state.models.selected_title()}

    @api.post("/options")
    async def set_options(request: Request):
        refusal = state.access.refusal(Caller(getattr(request.state, "user", None)), "change server-wide settings")
        if refusal is not None:
            raise HTTPException(403, f"{refusal} Send per-job settings in override_settings instead.")
        try:
            changes = await request.json()
        except ValueError:
            raise HTTPException(400, "body: expected a JSON object of settings") from None
        info.set_options(state, changes)
        return None

    @api.get("/cmd-flags")
    def cmd_flags():
        return info.cmd_flags(state)

    @api.post("/refresh-checkpoints")
    def refresh_checkpoints():
        state.models.refresh()
        return None

    api.add_api_route("/samplers", info.samplers, methods=["GET"])
    api.add_api_route("/schedulers", info.schedulers, methods=["GET"])
    api.add_api_route("/sd-models", lambda: info.sd_models(state), methods=["GET"])
    api.add_api_route("/upscalers", info.upscalers, methods=["GET"])
    api.add_api_route("/latent-upscale-modes", info.latent_upscale_modes, methods=["GET"])
    api.add_api_route("/prompt-styles", lambda: info.prompt_styles(state), methods=["GET"])
    api.add_api_route("/memory", info.memory, methods=["GET"])
    api.add_api_route("/sd-vae", lambda: info.sd_vaes(state), methods=["GET"])  # models/vae.py
    api.add_api_route("/embeddings", lambda: info.embeddings(state), methods=["GET"])  # networks/embeddings.py
    api.add_api_route("/refresh-embeddings", lambda: info.refresh_embeddings(state), methods=["POST"])
    api.add_api_route("/refresh-vae", lambda: None, methods=["POST"])  # the VAE list is read on every request
    api.add_api_route("/loras", lambda: info.loras(state), methods=["GET"])  # LoRA (webui/networks)
    api.add_api_route("/refresh-loras", lambda: info.refresh_loras(state), methods=["POST"])
    api.add_api_route("/hypernetworks", lambda: info.hypernetworks(state), methods=["GET"])  # networks/hypernetworks.py
    # Extension scripts (webui/extensions): their names per tab, and their arguments.
    api.add_api_route("/scripts", lambda: info.scripts_list(state), methods=["GET"])
    # Ours: where jobs run (webui/workers), each worker's device, loaded model, current job and counts.
    api.add_api_route("/workers", lambda: state.queue.workers_info(), methods=["GET"])
    api.add_api_route("/script-info", lambda: info.script_info(state), methods=["GET"])
    api.add_api_route("/extensions", lambda: extension_entries(state), methods=["GET"])  # extensions/manager.py
    register_extras(api, state)  # extra-single-image, extra-batch-images, realesrgan-models, face-restorers
    register_interrogate(api, state)  # POST /interrogate (webui/interrogate)
    app.include_router(api)


def register_internal(app: FastAPI, state: SharedState) -> None:
    """The /internal routes A1111's UI polls; served with or without --api, behind the login when
    one is set (the guard), and answering about the caller's own tasks only."""
    if getattr(app.state, "webui_internal_registered", False):
        return
    app.state.webui_internal_registered = True
    _prepare(app, state)
    internal = APIRouter(prefix="/internal")
    internal.add_api_route("/ping", lambda: {}, methods=["GET"])

    @internal.get("/pending-tasks")
    def pending_tasks(request: Request):
        return _pending(state, caller(request))

    @internal.post("/progress", response_model=InternalProgressResponse)
    def progress_poll(req: InternalProgressRequest, request: Request):
        return internal_progress(state, req, caller(request))

    app.include_router(internal)


def _pending(state: SharedState, owner: str) -> dict:
    """A1111 lists every waiting task; here only the caller's (others' ids are theirs to follow)."""
    tasks = [job.id for job in state.queue.pending() if job.owner == owner]
    return {"size": len(tasks), "tasks": tasks}
