"""Typed generation parameters: what the UI, the API, the CLI and scripts fill in.

Field names are A1111's (`/sdapi/v1/txt2img`), so every layer maps onto them one to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ParamsError(ValueError):
    """A parameter a user gave cannot be used; the message says which and why."""


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
    save_images: bool = True
    outdir: Path | None = None  # default: outputs/txt2img-images/<date>
    settings: GenerationSettings = field(default_factory=GenerationSettings)
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
        problems = []
        if not 1 <= self.steps <= 1000:
            problems.append(f"steps must be between 1 and 1000, not {self.steps}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 64 or value > 8192 or value % 8:
                problems.append(f"{name} must be a multiple of 8 between 64 and 8192, not {value}")
        if not 1 <= self.batch_size <= 64:
            problems.append(f"batch_size must be between 1 and 64, not {self.batch_size}")
        if not 1 <= self.n_iter <= 1000:
            problems.append(f"n_iter must be between 1 and 1000, not {self.n_iter}")
        if self.enable_hr:
            if not 0 <= self.denoising_strength <= 1:
                problems.append(f"denoising_strength must be between 0 and 1, not {self.denoising_strength}")
            if not 0 <= self.hr_second_pass_steps <= 1000:
                problems.append(f"hr_second_pass_steps must be between 0 and 1000, not {self.hr_second_pass_steps}")
            if self.hr_resize_x < 0 or self.hr_resize_y < 0 or self.hr_scale <= 0:
                problems.append("hr_scale must be positive and hr_resize_x/hr_resize_y 0 or positive")
            else:
                width, height, _, _ = self.hires_size()
                if not (64 <= width <= 8192 and 64 <= height <= 8192):
                    problems.append(f"the hires size {width}x{height} must be between 64 and 8192 on each side")
        count = self.batch_size * self.n_iter
        for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "all_hr_prompts",
                     "all_hr_negative_prompts"):
            values = getattr(self, name)
            if values is not None and len(values) < count:
                problems.append(f"{name} has {len(values)} entries; batch_size * n_iter = {count} are needed")
        if self.settings.clip_skip < 1:
            problems.append(f"clip skip must be 1 or more, not {self.settings.clip_skip}")
        problems += self._name_problems()
        if problems:
            raise ParamsError("; ".join(problems))

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
