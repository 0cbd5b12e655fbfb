"""Typed generation parameters: what the UI, the API, the CLI and scripts fill in.

Field names are A1111's (`/sdapi/v1/txt2img`), so every layer maps onto them one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from prompt_parser import and_parts, bracket_depth, weight_outside


class ParamsError(ValueError):
    """A parameter a user gave cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Limits:
    """How much work one request may ask for: checked before a job is queued (the API, the UI), and
    again by the engine. The defaults are A1111's UI maxima (steps 150, 2048x2048, batch count 100 x
    batch size 8), so whatever A1111's UI allows works; a server admin raises them with the --max-*
    flags (flags, not settings: users cannot change them)."""

    prompt_length: int = 20_000  # characters per prompt; encoding cost grows with it (75-token chunks)
    prompt_nesting: int = 50  # bracket depth; 1.1**50 ~ 117x emphasis is already far past any real prompt
    # AND parts per prompt: each is one more UNet row per step (a batch of 8 at 32 parts is 264 rows). Regional
    # prompting and composable diffusion use 2 to 10; a 20,000-character prompt could hold ~4,000.
    prompt_parts: int = 32
    pixels: int = 2048 * 2048  # per image (the hires result included), also for seed_resize_from
    images: int = 800  # batch_size * n_iter
    steps: int = 150  # steps and hires steps

    @classmethod
    def from_flags(cls, flags) -> "Limits":
        """The limits --max-* flags set; a flags object without them (an older caller) gets the defaults."""
        defaults = cls()
        return cls(**{name: getattr(flags, f"max_{name}", None) or getattr(defaults, name)
                      for name in cls.__dataclass_fields__})


# The flags that raise the limits, with their help (webui/flags.py adds them to the WebUI's and the CLI's parsers).
LIMIT_FLAGS = {
    "prompt_length": "most characters in one prompt",
    "prompt_nesting": "deepest nesting of ( and [ in a prompt",
    "prompt_parts": "most AND parts in one prompt (each is one more UNet row per step)",
    "pixels": "most pixels (width x height) of one image, the hires result included",
    "images": "most images per request (batch size x batch count)",
    "steps": "most sampling steps (and hires steps)",
}
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch's generators take; each image's seed must stay inside
MAX_CLIP_SKIP = 12  # A1111's slider; SD1's text encoder has 12 layers
MAX_SIDE = 8192  # pixels per side, whatever the pixel limit
# Emphasis and AND-part weights bound: huge ones overflow the conditioning into NaNs (fp16 ends at 65504), and
# far before that only give noise. Real prompts stay within about -2..5; 48 nested ( ) still pass (1.1**48 ~ 97).
MAX_WEIGHT = 100


def weight_problem(name: str, found: tuple[str, float]) -> str:
    """The message for a weight outside -MAX_WEIGHT..MAX_WEIGHT: the field, the text and its weight."""
    text, weight = found
    text = text if len(text) <= 60 else text[:57] + "..."
    return (f"{name} gives {text!r} a weight of {weight:g}; weights (emphasis such as (text:1.2), nested "
            f"brackets multiplied, and an AND part's :weight) must be between -{MAX_WEIGHT} and {MAX_WEIGHT}")


def number_problem(name: str, value, low: float, high: float, allow_inf: bool = False) -> str | None:
    """Why `value` is not a number from `low` to `high` (NaN never is; infinity only with allow_inf), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number, not {value!r}"
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or not low <= value <= high:
        bounds = f"between {low:g} and {high:g}" if math.isfinite(high) else f"of {low:g} or more"
        return f"{name} must be {'a number' if allow_inf else 'a finite number'} {bounds}, not {value!r}"
    return None


# A1111's hires choices that mean "the first pass's" (as clients send them); "" means the same.
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"


@dataclass
class GenerationSettings:
    """Settings (A1111 `opts`) that change what is generated; recorded in the infotext."""

    clip_skip: int = 1  # CLIP_stop_at_last_layers
    emphasis: str = "Original"
    comma_padding_backtrack: int = 20
    sdxl_clip_l_skip: bool = False
    use_old_scheduling: bool = False
    randn_source: str = "GPU"  # "GPU", "CPU" or "NV", A1111's RNG setting
    eta_noise_seed_delta: int = 0  # ENSD
    eta_ancestral: float = 1.0
    eta_ddim: float = 0.0
    tiled_vae_decode: bool = False
    s_min_uncond: float = 0.0  # "Negative Guidance minimum sigma" (NGMS)
    s_min_uncond_all: bool = False  # NGMS on every step rather than every other
    skip_early_cond: float = 0.0  # "Skip Early CFG": the fraction of steps with no uncond pass
    pad_cond_uncond: bool = False  # "Pad conds": the shorter of prompt and negative padded with empty-prompt chunks
    pad_cond_uncond_v0: bool = False  # "Pad conds v0": the same, padded by repeating its last token vector
    nan_check: bool = True  # fail a job whose UNet or VAE output holds NaNs (off: --disable-nan-check)
    live_preview_every: int = 0  # steps between previews; 0 = none
    samples_filename_pattern: str = "[seed]"
    samples_format: str = "png"


@dataclass
class Txt2ImgParams:
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float = 7.0
    distilled_cfg_scale: float | None = None  # families with distilled guidance (Flux dev); None: the family's
    width: int = 512
    height: int = 512
    eta: float | None = None
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    # Hires fix: a second pass at a larger size (A1111's names and API defaults).
    enable_hr: bool = False
    denoising_strength: float = 0.75  # the second pass's
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0  # 0: the same as steps
    hr_resize_x: int = 0  # both 0: scale by hr_scale
    hr_resize_y: int = 0
    hr_sampler_name: str = ""  # "" or SAME_SAMPLER: the first pass's
    hr_scheduler: str = ""  # "" or SAME_SCHEDULER: the first pass's
    hr_prompt: str = ""  # "": the first pass's
    hr_negative_prompt: str = ""
    tiling: bool = False  # seamless textures: circular padding in the UNet and VAE (generation/tiling.py)
    # restore_faces: a FaceRestoration (postprocessing/face_restoration.py) run on each image before scripts see it
    face_restoration: object = None
    save_images: bool = True
    outdir: Path | None = None  # default: outputs/txt2img-images/<date>
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    limits: Limits = field(default_factory=Limits)  # the server's (--max-* flags), set by each front end
    # Per-image inputs (A1111's all_prompts, all_seeds, ...; scripts set them), batch_size * n_iter
    # entries each. None: every image gets the prompt; seeds count up from `seed` as usual.
    all_prompts: list[str] | None = None
    all_negative_prompts: list[str] | None = None
    all_seeds: list[int] | None = None
    all_subseeds: list[int] | None = None
    all_hr_prompts: list[str] | None = None  # None: hr_prompt, else the image's prompt
    all_hr_negative_prompts: list[str] | None = None
    # More infotext keys; a list value gives one entry per image of the call.
    extra_generation_params: dict = field(default_factory=dict)

    def hires_size(self) -> tuple[int, int, int, int]:
        """(width, height) the second pass runs at, and the (width, height) it is cropped to.

        As A1111: a scale multiplies the first-pass size; one resize side keeps the aspect
        ratio; two sides cover the box at the first pass's aspect ratio, then crop.
        """
        if not self.hr_resize_x and not self.hr_resize_y:
            width, height = int(self.width * self.hr_scale), int(self.height * self.hr_scale)
            target = (width, height)
        elif not self.hr_resize_y:
            width, height = self.hr_resize_x, self.hr_resize_x * self.height // self.width
            target = (width, height)
        elif not self.hr_resize_x:
            width, height = self.hr_resize_y * self.width // self.height, self.hr_resize_y
            target = (width, height)
        else:
            target = (self.hr_resize_x, self.hr_resize_y)
            if self.width / self.height < self.hr_resize_x / self.hr_resize_y:
                width, height = self.hr_resize_x, self.hr_resize_x * self.height // self.width
            else:
                width, height = self.hr_resize_y * self.width // self.height, self.hr_resize_y
        return width // 8 * 8, height // 8 * 8, target[0] // 8 * 8, target[1] // 8 * 8

    def validate(self) -> None:
        """Every problem of these parameters at once, as one ParamsError; the one check the API, the UI,
        the CLI, scripts and the engine share. A huge prompt is refused by its length before anything
        parses it."""
        limits = self.limits
        problems = []
        if not 1 <= self.steps <= limits.steps:
            problems.append(f"steps must be between 1 and {limits.steps} (--max-steps), not {self.steps}")
        problems += self._size_problems("width", "height", self.width, self.height)
        if not 1 <= self.batch_size <= 64:
            problems.append(f"batch_size must be between 1 and 64, not {self.batch_size}")
        if self.n_iter < 1:
            problems.append(f"n_iter must be 1 or more, not {self.n_iter}")
        count = self.batch_size * self.n_iter
        if count > limits.images:
            problems.append(f"batch_size * n_iter is {count} images; at most {limits.images} are allowed (--max-images)")
        if self.enable_hr:
            problems += self._hires_problems()
        # Numbers: finite (NaN or infinity would reach the UNet as NaNs) and in A1111's ranges or near them.
        numbers = [("cfg_scale", self.cfg_scale, 0, 100), ("subseed_strength", self.subseed_strength, 0, 1),
                   ("s_churn", self.s_churn, 0, 100), ("s_tmin", self.s_tmin, 0, math.inf), ("s_noise", self.s_noise, 0, 10)]
        if self.enable_hr:  # txt2img uses it only for the second pass; img2img checks its own
            numbers.append(("denoising_strength", self.denoising_strength, 0, 1))
        problems += [problem for name, value, low, high in numbers
                     if (problem := number_problem(name, value, low, high)) is not None]
        if (problem := number_problem("s_tmax", self.s_tmax, 0, math.inf, allow_inf=True)) is not None:
            problems.append(problem)
        if self.eta is not None and (problem := number_problem("eta", self.eta, 0, 1)) is not None:
            problems.append(problem)
        if self.distilled_cfg_scale is not None and \
                (problem := number_problem("distilled_cfg_scale", self.distilled_cfg_scale, 0, 100)) is not None:
            problems.append(problem)
        if self.seed_resize_from_w > 0 and self.seed_resize_from_h > 0:  # otherwise off, as in A1111
            problems += self._size_problems("seed_resize_from_w", "seed_resize_from_h", self.seed_resize_from_w,
                                            self.seed_resize_from_h, smallest=1, multiple=1)
        problems += self._seed_problems(count)
        problems += self._prompt_problems()
        for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "all_hr_prompts",
                     "all_hr_negative_prompts"):
            values = getattr(self, name)
            if values is not None and len(values) < count:
                problems.append(f"{name} has {len(values)} entries; batch_size * n_iter = {count} are needed")
        if not 1 <= self.settings.clip_skip <= MAX_CLIP_SKIP:
            problems.append(f"clip skip must be between 1 and {MAX_CLIP_SKIP}, not {self.settings.clip_skip}")
        problems += self._name_problems()
        if problems:
            raise ParamsError("; ".join(problems))

    def _size_problems(self, width_name: str, height_name: str, width: int, height: int, smallest: int = 64,
                       multiple: int = 8) -> list[str]:
        """A size's sides (`smallest`..MAX_SIDE, a multiple of `multiple`) and its pixels (--max-pixels)."""
        problems = []
        for name, value in ((width_name, width), (height_name, height)):
            if not smallest <= value <= MAX_SIDE or value % multiple:
                what = f"a multiple of {multiple} between" if multiple > 1 else "between"
                problems.append(f"{name} must be {what} {smallest} and {MAX_SIDE}, not {value}")
        if not problems and width * height > self.limits.pixels:
            problems.append(f"{width_name} x {height_name} is {width}x{height} = {width * height} pixels; at most "
                            f"{self.limits.pixels} are allowed (--max-pixels)")
        return problems

    def _hires_problems(self) -> list[str]:
        problems = []
        if not 0 <= self.hr_second_pass_steps <= self.limits.steps:
            problems.append(f"hr_second_pass_steps must be between 0 and {self.limits.steps} (--max-steps), "
                            f"not {self.hr_second_pass_steps}")
        if (problem := number_problem("hr_scale", self.hr_scale, 0, 16)) is not None:
            return [*problems, problem]
        if self.hr_resize_x < 0 or self.hr_resize_y < 0 or self.hr_scale <= 0:
            return [*problems, "hr_scale must be positive and hr_resize_x/hr_resize_y 0 or positive"]
        if max(self.hr_resize_x, self.hr_resize_y) > MAX_SIDE:
            return [*problems, f"hr_resize_x and hr_resize_y must be at most {MAX_SIDE}"]
        if not (64 <= self.width <= MAX_SIDE and 64 <= self.height <= MAX_SIDE):
            return problems  # the first pass's size is wrong (said above): no hires size to work out
        width, height, _, _ = self.hires_size()
        if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE):
            problems.append(f"the hires size {width}x{height} must be between 64 and {MAX_SIDE} on each side")
        elif width * height > self.limits.pixels:
            problems.append(f"the hires size {width}x{height} is {width * height} pixels; at most "
                            f"{self.limits.pixels} are allowed (--max-pixels)")
        return problems

    def _seed_problems(self, count: int) -> list[str]:
        """Every image's seed (seed + its index, plus ENSD for the sampler's noise) must suit torch's generators."""
        low, high = SEED_RANGE
        delta = self.settings.eta_noise_seed_delta
        problems = []
        for name, value, extra in (("seed", self.seed, delta), ("subseed", self.subseed, 0)):
            if not isinstance(value, int) or value == -1:  # -1: a random seed, drawn later
                continue
            if not low <= value + min(extra, 0) <= value + count - 1 + max(extra, 0) <= high:
                problems.append(f"{name} must be -1 (random) or a whole number whose images' seeds stay between "
                                f"{low} and {high}, not {value}")
        for name, extra in (("all_seeds", delta), ("all_subseeds", 0)):
            for value in getattr(self, name) or ():
                if isinstance(value, int) and not low <= value + extra <= high:
                    problems.append(f"{name} holds {value}, outside {low}..{high}")
                    break
        return problems

    def _prompt_problems(self) -> list[str]:
        """Each prompt's length, its bracket nesting, its AND parts (--max-prompt-length, --max-prompt-nesting,
        --max-prompt-parts), then its weights (MAX_WEIGHT)."""
        limits = self.limits
        texts = {"prompt": [self.prompt], "negative_prompt": [self.negative_prompt], "hr_prompt": [self.hr_prompt],
                 "hr_negative_prompt": [self.hr_negative_prompt]}
        for name in ("all_prompts", "all_negative_prompts", "all_hr_prompts", "all_hr_negative_prompts"):
            texts[name] = getattr(self, name) or []
        problems = []
        for name, values in texts.items():
            positive = "negative" not in name  # a negative prompt is not split at AND (A1111's rule)
            seen = set()
            for text in values:
                if not isinstance(text, str):
                    problems.append(f"{name} must be text, not {type(text).__name__}")
                elif text in seen:  # a batch often repeats one prompt: each distinct text is read once
                    continue
                elif len(text) > limits.prompt_length:
                    problems.append(f"{name} has {len(text)} characters; at most {limits.prompt_length} are "
                                    f"allowed (--max-prompt-length)")
                elif (depth := bracket_depth(text)) > limits.prompt_nesting:
                    problems.append(f"{name} nests brackets {depth} deep; at most {limits.prompt_nesting} levels "
                                    f"are allowed (--max-prompt-nesting)")
                elif positive and (parts := and_parts(text)) > limits.prompt_parts:
                    problems.append(f"{name} has {parts} AND parts; at most {limits.prompt_parts} are allowed "
                                    f"(--max-prompt-parts)")
                elif (found := weight_outside(text, MAX_WEIGHT, negative=not positive)) is not None:
                    problems.append(weight_problem(name, found))
                else:
                    seen.add(text)
                    continue
                break  # one problem per field is enough
        return problems

    def _name_problems(self) -> list[str]:
        """Sampler, scheduler and upscaler names that do not exist. The one check of them, so that the API, the
        UI and the engine accept the same values (A1111's "Use same sampler" included)."""
        from .sampling import choose_sampler  # the engine's own lookups (imported late: they import torch)
        from .upscalers import LATENT_UPSCALE_MODES, find_upscaler

        problems = []
        try:
            choose_sampler(self.sampler_name, self.scheduler)
        except ParamsError as error:
            return [str(error)]  # the hires names default to these: one message is enough
        if self.enable_hr:
            sampler = "" if self.hr_sampler_name == SAME_SAMPLER else self.hr_sampler_name
            scheduler = "" if self.hr_scheduler == SAME_SCHEDULER else self.hr_scheduler
            try:
                choose_sampler(sampler or self.sampler_name, scheduler or self.scheduler)
            except ParamsError as error:
                problems.append(f"hires: {error}")
            if self.hr_upscaler not in LATENT_UPSCALE_MODES:
                try:
                    find_upscaler(self.hr_upscaler)
                except ValueError as error:
                    problems.append(str(error))
        return problems
