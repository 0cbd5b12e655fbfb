"""A1111's processing object `p` over our typed params, `process_images`, and `run_job`.

`p` holds every field of our typed params (webui/generation/params.py, img2img.py) as a plain
attribute, plus A1111's own (all_prompts, all_seeds, extra_generation_params, script_args, ...).
`process_images(p)` turns p back into typed params batch by batch and runs our one engine, with
hooks that call the scripts; whatever a script changed on p is what gets generated and written
in the infotext.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..generation.denoiser import Interrupted, JobControl
from ..generation.images import dated
from ..generation.img2img import Img2ImgParams
from ..generation.params import Txt2ImgParams
from ..generation.processing import Processed as GenerationResult
from ..generation.rng import fix_seed as fixed_seed
from .hooks import ScriptHooks

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What process_images needs from the job it runs in."""

    state: Any  # SharedState
    tab: str
    model: Any
    control: JobControl
    generate: Callable  # (model, typed params of one batch, hooks) -> GenerationResult
    overrides: dict  # the job's override_settings
    on_batch: Callable[[int, int], None] | None = None  # (batch, batches): progress


_local = threading.local()  # the context of the job this thread runs, for p objects scripts make


def current_context() -> JobContext | None:
    return getattr(_local, "context", None)


@contextmanager
def _running(context: JobContext):
    previous, _local.context = current_context(), context
    try:
        yield
    finally:
        _local.context = previous


# Defaults of A1111's own fields (beyond our typed params); lists and dicts are copied per p.
_A1111_FIELDS: dict[str, Any] = {
    "sd_model": None, "outpath_samples": None, "outpath_grids": None, "styles": [], "override_settings": {},
    "override_settings_restore_afterwards": True, "script_args": [], "scripts": None, "is_api": False,
    "iteration": 0, "batch_index": 0, "prompts": None, "negative_prompts": None, "seeds": None, "subseeds": None,
    "hr_prompts": None, "hr_negative_prompts": None, "prompt_for_display": None, "comments": {},
    "restore_faces": False, "do_not_save_grid": False, "disable_extra_networks": False,
    "extra_network_data": {}, "user": None, "job_timestamp": "", "sampler": None, "refiner_checkpoint": None,
    "refiner_switch_at": None, "seed_enable_extras": True, "token_merging_ratio": 0, "token_merging_ratio_hr": 0,
    "s_min_uncond": 0.0, "main_prompt": None, "main_negative_prompt": None, "extra_result_images": [],
    "firstpass_image": None, "overlay_images": None, "paste_to": None, "is_hr_pass": False,
}
_RENAMES = {"sampler_index": "sampler_name"}  # A1111's old keyword names


def _model_property(name: str, read: Callable) -> property:
    """A field read from p.sd_model that a script may still set (then its value is kept)."""
    key = f"_{name}"
    return property(lambda self: self.__dict__[key] if key in self.__dict__ else read(self.sd_model),
                    lambda self, value: self.__dict__.__setitem__(key, value))


class StableDiffusionProcessing:
    """A1111's `p`. Construct it with A1111's keywords, or from typed params with `from_params`."""

    params_class: type = Txt2ImgParams
    _context: JobContext | None = None

    def __init__(self, **kwargs):
        defaults = self.params_class()
        for item in dataclasses.fields(self.params_class):
            setattr(self, item.name, getattr(defaults, item.name))
        for name, value in _A1111_FIELDS.items():
            setattr(self, name, value.copy() if isinstance(value, (list, dict)) else value)
        self.extra_generation_params = {}
        for name, value in kwargs.items():
            name = _RENAMES.get(name, name)
            if value is None and getattr(defaults, name, None) is not None:
                continue  # A1111 callers pass None for "the default"
            setattr(self, name, value)
        self.cached_c = self.cached_uc = [None, None]

    @classmethod
    def from_params(cls, params, **fields) -> "StableDiffusionProcessing":
        p = cls(**{item.name: getattr(params, item.name) for item in dataclasses.fields(params)})
        p.extra_generation_params = dict(params.extra_generation_params)
        for name, value in fields.items():
            setattr(p, name, value)
        return p

    # A1111 names that are views of ours.
    @property
    def do_not_save_samples(self) -> bool:
        return not self.save_images

    @do_not_save_samples.setter
    def do_not_save_samples(self, value: bool) -> None:
        self.save_images = not value

    # The loaded model's names, unless a script set its own.
    sd_model_name = _model_property("sd_model_name", lambda model: getattr(model, "name", None))
    sd_model_hash = _model_property("sd_model_hash", lambda model: getattr(model, "short_hash", None))
    sd_vae_name = _model_property("sd_vae_name", lambda model: getattr(getattr(model, "vae_file", None), "name", None))

    def setup_prompts(self) -> None:
        """all_prompts & co from prompt & co (a list prompt gives one image each), as A1111."""
        count = self.batch_size * self.n_iter
        self.all_prompts = list(self.prompt) if isinstance(self.prompt, list) else [self.prompt] * count
        negative = self.negative_prompt
        self.all_negative_prompts = list(negative) if isinstance(negative, list) else [negative] * len(self.all_prompts)
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]
        hr, hr_negative = self.hr_prompt or None, self.hr_negative_prompt or None
        self.all_hr_prompts = [hr or prompt for prompt in self.all_prompts]
        self.all_hr_negative_prompts = [hr_negative or negative for negative in self.all_negative_prompts]

    def to_params(self):
        """Typed params with p's current values (for the whole call; process_images cuts batches)."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self.params_class)}
        values["prompt"] = self.main_prompt if isinstance(self.prompt, list) else self.prompt
        values["negative_prompt"] = (self.main_negative_prompt if isinstance(self.negative_prompt, list)
                                     else self.negative_prompt)
        values["extra_generation_params"] = {}  # read live from p by the hooks, per image
        if self.outpath_samples and values.get("outdir") is None:
            values["outdir"] = dated(Path(self.outpath_samples))
        return self.params_class(**values)

    def close(self) -> None:
        pass

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        return 0.0


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    params_class = Txt2ImgParams


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    params_class = Img2ImgParams

    @property
    def image_mask(self):
        return self.mask

    @image_mask.setter
    def image_mask(self, value) -> None:
        self.mask = value

    def setup_prompts(self) -> None:
        super().setup_prompts()
        self.all_hr_prompts = list(self.all_prompts)  # img2img has no second pass
        self.all_hr_negative_prompts = list(self.all_negative_prompts)


class Processed:
    """A1111's result object, as scripts build and read it."""

    def __init__(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None, all_negative_prompts=None,
                 all_seeds=None, all_subseeds=None, index_of_first_image=0, infotexts=None, comments="",
                 extra_images_list=None):
        self.images = list(images_list)
        self.extra_images = list(extra_images_list or [])
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{c}\n" for c in (getattr(p, "comments", None) or {})) or comments
        self.width, self.height = p.width, p.height
        self.sampler_name, self.scheduler = p.sampler_name, p.scheduler
        self.cfg_scale, self.steps, self.batch_size = p.cfg_scale, p.steps, p.batch_size
        self.restore_faces, self.face_restoration_model = False, None
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.sd_vae_name, self.sd_vae_hash = p.sd_vae_name, None
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = dict(p.extra_generation_params or {})
        self.index_of_first_image = index_of_first_image
        self.styles = list(p.styles or [])
        self.job_timestamp = p.job_timestamp
        self.clip_skip = p.settings.clip_skip
        self.eta = p.eta
        self.is_using_inpainting_conditioning = bool(getattr(p.sd_model, "is_inpainting", False))
        self.all_prompts = list(all_prompts or p.all_prompts or [self.prompt])
        self.all_negative_prompts = list(all_negative_prompts or p.all_negative_prompts or [self.negative_prompt])
        self.all_seeds = list(all_seeds or p.all_seeds or [seed])
        self.all_subseeds = list(all_subseeds or p.all_subseeds or [subseed])
        self.infotexts = list(infotexts or [info] * len(self.images))
        self.version = "sd-webui"
        self.paths: list[Path] = []  # ours: where the images were saved
        self.warnings: list[str] = []

    def js(self) -> str:
        keys = ("prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
                "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps",
                "batch_size", "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash",
                "sd_vae_name", "sd_vae_hash", "seed_resize_from_w", "seed_resize_from_h", "denoising_strength",
                "extra_generation_params", "index_of_first_image", "infotexts", "styles", "job_timestamp",
                "clip_skip", "is_using_inpainting_conditioning", "version")
        return json.dumps({key: getattr(self, key) for key in keys}, default=str)

    def infotext(self, p, index: int) -> str:
        return self.infotexts[index] if index < len(self.infotexts) else ""

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        return 0.0


def fix_seed(p) -> None:
    """Replace -1 (random) seeds on p by concrete ones, as A1111's modules.processing.fix_seed."""
    p.seed = fixed_seed(p.seed) if not isinstance(p.seed, list) else p.seed
    p.subseed = fixed_seed(p.subseed) if not isinstance(p.subseed, list) else p.subseed


def process_images(p) -> Processed:
    """Generate what p describes with our engine, calling the always-on scripts' hooks."""
    return _process_images(p, sink=None)


def _process_images(p, sink: GenerationResult | None) -> Processed:
    context = p._context or current_context()
    if context is None:
        return _process_as_job(p)
    p._context = context
    runner = p.scripts
    if runner is not None:
        runner.run_before_process(p)
    model = _model_for(context, p)
    if _known(p.override_settings):  # a script's settings for this call, over the job's
        p.settings = context.state.generation_settings({**context.overrides, **_known(p.override_settings)})
    fix_seed(p)
    p.setup_prompts()
    count = len(p.all_prompts)
    p.all_seeds = list(p.seed) if isinstance(p.seed, list) else [
        p.seed + (i if p.subseed_strength == 0 else 0) for i in range(count)]
    p.all_subseeds = list(p.subseed) if isinstance(p.subseed, list) else [p.subseed + i for i in range(count)]
    if p.prompt_for_display is None:
        p.prompt_for_display = p.all_prompts[0]
    p.to_params().validate()  # the whole call, as a script set it up (its n_iter, prompts), before any batch
    prompts, negatives = list(p.all_prompts), list(p.all_negative_prompts)
    hr_prompts, hr_negatives = list(p.all_hr_prompts), list(p.all_hr_negative_prompts)
    if runner is not None:
        runner.run_process(p)
    # A script that rewrote the prompts but not the hires ones: the hires pass follows (unless a
    # hires prompt of its own was given), so the second pass does not undo the script's change.
    if not p.hr_prompt and p.all_prompts != prompts and p.all_hr_prompts == hr_prompts:
        p.all_hr_prompts = list(p.all_prompts)
    if not p.hr_negative_prompt and p.all_negative_prompts != negatives and p.all_hr_negative_prompts == hr_negatives:
        p.all_hr_negative_prompts = list(p.all_negative_prompts)

    collected = GenerationResult()
    registry = getattr(context.state, "extra_networks", None)
    hooks = ScriptHooks(p, runner, context.state.callbacks, registry)
    try:
        _run_batches(p, context, model, hooks, collected, sink)
    finally:  # as A1111: extensions' extra networks are deactivated once the batches are done
        if registry is not None and registry.networks and not p.disable_extra_networks:
            registry.deactivate(p, p.extra_network_data)

    processed = Processed(p, collected.images, p.all_seeds[0], collected.infotexts[0] if collected.infotexts else "",
                          p.all_subseeds[0], collected.prompts, collected.negative_prompts, collected.seeds,
                          collected.subseeds, infotexts=collected.infotexts)
    processed.paths, processed.warnings = collected.paths, collected.warnings
    if runner is not None:
        runner.run_postprocess(p, processed)
    return processed


def _run_batches(p, context, model, hooks, collected, sink) -> None:
    """The batches of one process_images call, each through our engine; an interrupt keeps the finished ones."""
    size = p.batch_size
    for n in range(p.n_iter):
        if context.control.interrupted:
            break
        p.iteration = n
        if context.on_batch is not None:
            context.on_batch(n, p.n_iter)
        first, rows = n * size, slice(n * size, (n + 1) * size)
        params = replace(p.to_params(), n_iter=1, seed=p.all_seeds[first], subseed=p.all_subseeds[first],
                         all_prompts=p.all_prompts[rows], all_negative_prompts=p.all_negative_prompts[rows],
                         all_seeds=p.all_seeds[rows], all_subseeds=p.all_subseeds[rows],
                         all_hr_prompts=p.all_hr_prompts[rows], all_hr_negative_prompts=p.all_hr_negative_prompts[rows])
        try:
            part = context.generate(model, params, hooks)
        except Interrupted:  # keep the finished batches; the job reports the interrupt
            context.control.interrupted = True
            break
        _extend(collected, part)
        if sink is not None:
            _extend(sink, part)


def _process_as_job(p) -> Processed:
    """process_images outside a job (an extension's own API route): p goes through the queue."""
    from .. import compat

    if threading.current_thread().name == "job-queue":
        raise RuntimeError("process_images(p) outside a job cannot wait for the queue on its own worker")
    state = compat.state()
    kind = "img2img" if isinstance(p, StableDiffusionProcessingImg2Img) else "txt2img"
    if isinstance(p.prompt, list) or isinstance(p.seed, list):
        raise ValueError("process_images outside a job takes one prompt and one seed")
    job = state.queue.submit(kind, p.to_params(), "extension", override_settings=_known(p.override_settings),
                             script_args=p.script_args if p.scripts is not None else None, is_api=True).wait()
    if job.status == "failed":
        raise RuntimeError(f"{job.id} failed: {job.error}")
    result = job.result
    processed = Processed(p, result.images, result.seeds[0] if result.seeds else p.seed,
                          result.infotexts[0] if result.infotexts else "", result.subseeds[0] if result.subseeds else None,
                          result.prompts, result.negative_prompts, result.seeds, result.subseeds,
                          infotexts=result.infotexts)
    processed.paths, processed.warnings = result.paths, result.warnings
    return processed


def _extend(result: GenerationResult, part: GenerationResult) -> None:
    for name in ("images", "seeds", "subseeds", "prompts", "negative_prompts", "infotexts", "paths"):
        getattr(result, name).extend(getattr(part, name))
    result.warn(part.warnings)
    result.seconds += part.seconds


def _known(overrides: dict | None) -> dict:
    """The override_settings our settings know, checked as the API checks a request's (scripts may set any A1111
    key; others are ignored; a bad value, such as an X/Y/Z clip skip of 1000, fails the job as the user's error)."""
    from ..options import checked_settings

    return checked_settings(overrides, "override_settings")


def _model_for(context: JobContext, p):
    """The job's model, or the checkpoint a script asked for in p.override_settings."""
    wanted = (p.override_settings or {}).get("sd_model_checkpoint")
    if wanted and context.state.models is not None and hasattr(context.state.models, "switch"):
        current = getattr(context.model, "name", None)
        if wanted != current:
            context.model = context.state.models.switch(wanted)
    p.sd_model = context.model
    return context.model


def run_job(state, tab: str, params, script_args: list | None, control: JobControl, *, is_api: bool,
            generate: Callable, samples_dir: Path, grids_dir: Path, model=None, overrides: dict | None = None,
            result: GenerationResult | None = None, on_batch=None) -> GenerationResult:
    """One txt2img/img2img job: p from the typed params, the tab's scripts, then A1111's order:
    setup, the selected script's run() or process_images(p) (before_process, process, the
    batches, postprocess). Images land in `result` batch by batch, as the job goes. `samples_dir`, `grids_dir`:
    the settings' folders (options.output_folder), p.outpath_samples and p.outpath_grids as in A1111."""
    result = result if result is not None else GenerationResult()
    runner = runner_for(state, tab)
    cls = StableDiffusionProcessingImg2Img if tab == "img2img" else StableDiffusionProcessingTxt2Img
    p = cls.from_params(params, sd_model=model, is_api=is_api, scripts=runner,
                        outpath_samples=str(params.outdir or samples_dir), outpath_grids=str(grids_dir))
    if params.outdir is not None:
        p.outpath_samples = None  # an explicit folder is used as it is
    p.script_args = full_script_args(runner, script_args)
    context = JobContext(state, tab, model, control, generate, dict(overrides or {}), on_batch)
    p._context = context
    with _running(context):
        if runner is not None:
            runner.run_setup(p, is_ui=not is_api)
            processed = runner.run(p, *p.script_args)
        else:
            processed = None
        if processed is None:
            processed = _process_images(p, sink=result)
        _take_result(result, processed)
    return result


def _take_result(result: GenerationResult, processed: Processed) -> None:
    """The job's result as the scripts left it (postprocess or run() may change the images)."""
    result.images[:] = processed.images
    result.infotexts[:] = processed.infotexts
    result.seeds[:] = processed.all_seeds[: len(processed.images)] if processed.images else []
    result.subseeds[:] = processed.all_subseeds[: len(processed.images)] if processed.images else []
    result.prompts[:] = processed.all_prompts[: len(processed.images)] if processed.images else []
    result.negative_prompts[:] = processed.all_negative_prompts[: len(processed.images)] if processed.images else []
    for path in getattr(processed, "paths", []):
        if path not in result.paths:
            result.paths.append(path)
    result.warn(getattr(processed, "warnings", []))
    if isinstance(getattr(processed, "width", None), int) and isinstance(getattr(processed, "height", None), int):
        result.size = (processed.width, processed.height)  # a script (an upscaler) may have changed it


# Callback categories a generation job calls; an extension with any of them needs the scripts layer.
JOB_CALLBACKS = ("before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg")


def needs_scripts(state, tab: str, script_args: list | None, params=None, overrides: dict | None = None) -> bool:
    """Whether a job must go through A1111's `p` (an always-on script, a chosen script, an extension's
    callbacks or extra networks, or one of ours that works the same way and is used: a hypernetwork in
    the prompts or the `sd_hypernetwork` setting); when not, the queue calls the engine directly."""
    runner = state.runners.get(tab) if state.runners else None
    if runner is None and state.scripts.classes:
        runner = runner_for(state, tab)
    if runner is not None and runner.alwayson_scripts:
        return True
    if script_args and isinstance(script_args[0], int) and script_args[0] > 0:  # A1111: index 0 is "None"
        return True
    callbacks = getattr(state, "callbacks", None)
    if callbacks is not None and any(callbacks.callbacks(category) for category in JOB_CALLBACKS):
        return True
    registry = getattr(state, "extra_networks", None)
    if registry is None or not registry.networks:
        return False
    if any(network not in registry.builtin.values() for network in registry.networks.values()):
        return True
    prompts = [getattr(params, name, "") or "" for name in ("prompt", "negative_prompt", "hr_prompt")]
    prompts += list(getattr(params, "all_prompts", None) or [])
    setting = {**state.options.as_dict(), **(overrides or {})}.get("sd_hypernetwork") or "None"
    return setting != "None" or any(f"<{name}:" in text for name in registry.builtin for text in prompts)


def runner_for(state, tab: str):
    """The tab's ScriptRunner; built on first use when scripts are loaded but no UI built them."""
    runner = state.runners.get(tab)
    if runner is None and state.scripts.classes:
        from .scripts import create_runners

        runner = create_runners(state)[tab]
    if runner is not None:
        runner.ensure_inputs()
    return runner


def full_script_args(runner, given: list | None) -> list:
    """A complete args list: the inputs' defaults, overwritten by what the caller gave."""
    if runner is None:
        return list(given or [])
    args = runner.default_args()
    for index, value in enumerate(given or []):
        if index < len(args):
            args[index] = value
        else:
            args.append(value)
    return args
