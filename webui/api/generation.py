"""POST /sdapi/v1/txt2img and /img2img: A1111's request in, through the job queue, A1111's response out."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import anyio
from fastapi import HTTPException, Request


from ..generation.img2img import Img2ImgParams
from ..generation.params import Limits, ParamsError, Txt2ImgParams
from ..generation.processing import VERSION
from ..jobs import Job, checked_overrides
from ..options import OptionsError
from ..state import SharedState
from ..styles import apply_styles
from .common import decode_image, encode_png, known_checkpoint
from .models import Img2ImgRequest, Txt2ImgRequest

log = logging.getLogger(__name__)
DISCONNECT_CHECK_SECONDS = 0.25  # how often a waiting request looks whether its client is still there

# Request fields for features this WebUI does not have yet: refused with a clear 400 when
# set, rather than silently ignored (a client asking for face restoration should know).
_NOT_YET = ("refiner_checkpoint", "hr_checkpoint_name", "firstpass_image",
            "latent_mask", "infotext")
_COMMON_FIELDS = ("prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
                  "seed_resize_from_w", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height", "eta",
                  "enable_hr", "hr_scale", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_prompt",
                  "hr_negative_prompt", "save_images")
_ECHOED = ("width", "height", "steps", "cfg_scale", "sampler_name", "scheduler")  # filled in when left out
_EXTRAS = ("s_churn", "s_tmin", "s_tmax", "s_noise")  # None: the sampler's own default
_IMG2IMG_FIELDS = ("resize_mode", "image_cfg_scale", "mask_blur", "mask_blur_x", "mask_blur_y", "mask_round",
                   "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert")


def build_params(state: SharedState, req: Txt2ImgRequest, kind: str, checkpoint: str | None = None):
    """Typed parameters from an API request, checked as far as can be before queueing. `checkpoint`: the one
    override_settings asks for, if any."""
    for name in _NOT_YET:
        if getattr(req, name, None):
            raise HTTPException(400, f"{name}: not supported by this WebUI yet")
    cls = Img2ImgParams if kind == "img2img" else Txt2ImgParams
    values = {name: getattr(req, name) for name in _COMMON_FIELDS}
    values |= {name: getattr(req, name) for name in _EXTRAS if getattr(req, name) is not None}
    values["sampler_name"] = req.sampler_name or req.sampler_index
    values["scheduler"] = req.scheduler or "Automatic"
    values["tiling"] = bool(req.tiling)  # None (left out): off, as A1111's default
    values["distilled_cfg_scale"] = req.distilled_cfg_scale
    values["hr_upscaler"] = req.hr_upscaler or "Latent"
    values["hr_sampler_name"] = req.hr_sampler_name or ""
    values["hr_scheduler"] = req.hr_scheduler or ""
    # A checkpoint that carries its own defaults (the demo model's 128x128) fills the fields a client left out;
    # ordinary checkpoints keep A1111's API defaults.
    sent = req.model_fields_set
    for name, value in state.models.generation_defaults(checkpoint).items():
        if name not in sent and not (name == "sampler_name" and "sampler_index" in sent):
            values[name] = value
    if req.denoising_strength is not None:
        values["denoising_strength"] = req.denoising_strength
    if req.restore_faces:
        values["face_restoration"] = face_restoration_for(state)
    if req.styles:
        try:
            values["prompt"], values["negative_prompt"] = apply_styles(state, req.styles, req.prompt, req.negative_prompt)
        except ParamsError as error:
            raise HTTPException(404, str(error)) from None
    if kind == "img2img":
        values |= {name: getattr(req, name) for name in _IMG2IMG_FIELDS}
        if req.initial_noise_multiplier is not None:
            values["initial_noise_multiplier"] = req.initial_noise_multiplier
        if not req.init_images:
            raise HTTPException(400, "init_images: at least one base64 image is required")
        values["init_images"] = [decode_image(data, f"init_images[{i}]") for i, data in enumerate(req.init_images)]
        if req.mask:
            values["mask"] = decode_image(req.mask, "mask")
    p = cls(**values, limits=Limits.from_flags(state.flags))  # the server's limits (--max-*), before queueing
    try:
        p.validate()  # the engine's own check, run again when the job starts
    except ParamsError as error:
        raise HTTPException(400, str(error)) from None
    return p


def face_restoration_for(state: SharedState):
    """restore_faces: the restorer of the face_restoration_model setting (else the first with a model file),
    checked now so that a missing model file or face detector is a 400 naming its folder, not a failed job."""
    from ..postprocessing.face_restoration import (
        FaceRestoration, FaceRestorationUnavailable, choose_restorer, default_detector,
    )

    models_dir = state.flags.models_dir
    try:
        name = choose_restorer(models_dir, state.options.get("face_restoration_model", "") or "")
        default_detector(models_dir)
    except FaceRestorationUnavailable as error:
        raise HTTPException(400, f"restore_faces: {error}") from None
    weight = state.options.get("code_former_weight", 0.5)
    return FaceRestoration(name, models_dir, weight, str(getattr(state.models.slot, "device", "cpu")))


def checked_override_settings(state: SharedState, req: Txt2ImgRequest) -> dict:
    settings = dict(req.override_settings or {})
    if req.s_min_uncond is not None:  # A1111: the request's field wins over the NGMS setting for this job
        settings["s_min_uncond"] = req.s_min_uncond
    try:
        overrides = checked_overrides(settings, state.options.defaults())
    except OptionsError as error:
        raise HTTPException(400, str(error)) from None
    if overrides.get("sd_model_checkpoint"):
        known_checkpoint(state, overrides["sd_model_checkpoint"], "override_settings.sd_model_checkpoint")
    if overrides.get("sd_vae"):  # a VAE name must be one of /sdapi/v1/sd-vae (models/vae.py)
        from ..models.vae import VaeNotFound, resolve_vae, state_vaes

        try:
            resolve_vae(overrides["sd_vae"], None, state_vaes(state))
        except VaeNotFound as error:
            raise HTTPException(400, f"override_settings.sd_vae: {error}") from None
    return overrides


def script_args_for(state: SharedState, req: Txt2ImgRequest, kind: str) -> list | None:
    """A1111's positional script args from `script_name`/`script_args` and `alwayson_scripts`
    ({title: {"args": [...]}}), over the scripts' default values; 422 for a script the tab lacks."""
    from ..extensions.processing import runner_for

    runner = runner_for(state, kind)
    if runner is None:
        if req.script_name:
            raise HTTPException(422, f"script_name: no script named {req.script_name!r} on {kind}")
        if req.alwayson_scripts:
            raise HTTPException(422, f"alwayson_scripts: no always-on script named {next(iter(req.alwayson_scripts))!r}")
        return None
    args = runner.default_args()

    def put(script, values) -> None:
        if not isinstance(values, list):
            raise HTTPException(422, f"args of script {script.name!r} must be a list")
        for i, value in enumerate(values[: script.args_to - script.args_from]):
            args[script.args_from + i] = value

    if req.script_name:
        script = runner.find(req.script_name)
        if script is None or script.alwayson:
            names = ", ".join(s.name for s in runner.selectable_scripts) or "none"
            raise HTTPException(422, f"script_name: no selectable script named {req.script_name!r} on {kind} "
                                     f"(there are: {names})")
        put(script, list(req.script_args))
        args[0] = runner.selectable_index(script)
    for title, entry in req.alwayson_scripts.items():
        script = runner.find(title)
        if script is None or not script.alwayson:
            names = ", ".join(s.name for s in runner.alwayson_scripts) or "none"
            raise HTTPException(422, f"alwayson_scripts: no always-on script named {title!r} on {kind} "
                                     f"(there are: {names})")
        put(script, entry.get("args", []) if isinstance(entry, dict) else entry)
    return args


def non_finite_field(value, path: str = "") -> str | None:
    """The first field of a request (nested lists and objects included) holding NaN or an infinity, or None.
    Python's JSON reader takes NaN and Infinity, but no JSON answer can carry them back (the echo of the request
    would fail), and no field of ours needs them."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := non_finite_field(item, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None


async def client_gone(request: Request) -> bool:
    """Whether the client has hung up. Starlette's request.is_disconnected() only looks without waiting, and
    through an @app.middleware("http") (our timing, the login guard) that look never sees the disconnect; a wait
    of a few milliseconds does. The body is read by now: the only message left to come is the disconnect."""
    with anyio.move_on_after(0.005):
        return (await request.receive())["type"] == "http.disconnect"
    return False


async def run_generation(state: SharedState, req: Txt2ImgRequest, kind: str, owner: str,
                         request: Request | None = None) -> dict:
    """Queue the request's job and wait for it. With `request` given and the api_cancel_on_disconnect setting on,
    a client that hangs up has its job cancelled (waiting) or interrupted (running): nobody would get its images,
    and others wait behind it."""
    overrides = checked_override_settings(state, req)
    p = build_params(state, req, kind, overrides.get("sd_model_checkpoint"))
    if (field := non_finite_field(req.model_dump())) is not None:  # after build_params: its message is the better one
        raise HTTPException(400, f"{field}: must be a finite number (NaN and Infinity are not accepted)")
    script_args = script_args_for(state, req, kind)
    try:
        job = state.queue.submit(kind, p, owner, req.force_task_id or None, override_settings=overrides,
                                 script_args=script_args, is_api=True)
    except ValueError as error:
        raise HTTPException(409, f"force_task_id: {error}") from None
    # Poll instead of blocking a worker thread, so many waiting clients cost no threads.
    watch = request is not None and state.options.get("api_cancel_on_disconnect", True)
    next_check = time.monotonic() + DISCONNECT_CHECK_SECONDS
    while not job.is_finished:
        await asyncio.sleep(0.02)
        if watch and time.monotonic() >= next_check:
            next_check = time.monotonic() + DISCONNECT_CHECK_SECONDS
            if await client_gone(request):
                log.info("job %s: its client disconnected; cancelling it", job.id)
                state.queue.interrupt(job.id, owner)
                watch = False  # the job ends within one denoising step; the answer goes nowhere
    if job.status == "failed":
        # A parameter the job could only check once running is the client's error; anything else ours.
        raise HTTPException(400 if job.bad_input else 500, f"{job.id} failed: {job.error}")
    return response(state, req, job)


def response(state: SharedState, req: Txt2ImgRequest, job: Job) -> dict:
    result = job.result
    # The request as it ran: the fields the server filled in (the model's own defaults, the sampler) as used.
    ran = {name: getattr(job.params, name) for name in _ECHOED}
    parameters = {**req.model_dump(), **ran, "sampler_index": job.params.sampler_name}
    if isinstance(req, Img2ImgRequest) and not req.include_init_images:
        parameters["init_images"] = None  # A1111 echoes the images only when asked
        parameters["mask"] = None
    images = [encode_png(image, text) for image, text in zip(result.images, result.infotexts)] if req.send_images else []
    return {"images": images, "parameters": parameters, "info": json.dumps(info(state, job))}


def info(state: SharedState, job: Job) -> dict:
    """The `info` JSON of A1111's Processed, for the images this job finished."""
    p, result = job.params, job.result
    model = result.model  # what the job ran on, not what is loaded now
    width, height = result.size or (p.width, p.height)  # as the job's scripts left them
    first = lambda values, default: values[0] if values else default  # noqa: E731
    return {
        "prompt": p.prompt, "all_prompts": result.prompts,
        "negative_prompt": p.negative_prompt, "all_negative_prompts": result.negative_prompts,
        "seed": first(result.seeds, p.seed), "all_seeds": result.seeds,
        "subseed": first(result.subseeds, p.subseed), "all_subseeds": result.subseeds,
        "subseed_strength": p.subseed_strength, "width": width, "height": height,
        "sampler_name": p.sampler_name, "scheduler": p.scheduler, "cfg_scale": p.cfg_scale, "steps": p.steps,
        "batch_size": p.batch_size, "restore_faces": p.face_restoration is not None,
        "face_restoration_model": p.face_restoration.name if p.face_restoration is not None else None,
        "sd_model_name": model.name if model is not None else None,
        "sd_model_hash": model.short_hash if model is not None else None,
        "sd_vae_name": model.vae_name if model is not None else None,
        "sd_vae_hash": model.vae_short_hash if model is not None else None,
        "seed_resize_from_w": p.seed_resize_from_w, "seed_resize_from_h": p.seed_resize_from_h,
        "denoising_strength": p.denoising_strength if (job.kind == "img2img" or p.enable_hr) else None,
        "extra_generation_params": {}, "index_of_first_image": 0, "infotexts": result.infotexts,
        "styles": [], "job_timestamp": _timestamp(job), "clip_skip": p.settings.clip_skip,
        "is_using_inpainting_conditioning": bool(model is not None and model.is_inpainting),
        "version": VERSION,
        # Ours, beyond A1111: which task this was, how it ended, how long it waited in the queue.
        "id_task": job.id, "status": job.status,
        "queue_seconds": round((job.started or job.finished or job.submitted) - job.submitted, 3),
    }


def _timestamp(job: Job) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.submitted))
