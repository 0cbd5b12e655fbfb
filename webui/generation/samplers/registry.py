"""A1111's sampler and scheduler lists (UI order, names, aliases, flags) and sigma building."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from . import dpmsolver, kdiffusion, schedules, timestep
from .schedules import DiscreteSchedule, LCMSchedule

# How a sampler gets its sigmas: from the scheduler list ("kdiffusion"), from A1111's DDIM
# timestep list ("timesteps"), from UniPC's time grid ("unipc"), or from the scheduler list
# over LCM's 50-level table ("lcm").
KINDS = ("kdiffusion", "timesteps", "unipc", "lcm")


@dataclass(frozen=True)
class Sampler:
    """One entry of A1111's sampler list; `function` follows the package's sampler convention."""

    name: str
    aliases: tuple[str, ...]
    function: Callable
    default_scheduler: str | None = None  # label "Automatic" resolves to; None: the model's own
    second_order: bool = False  # two model calls per step (A1111 counts prompt-edit steps twice)
    brownian_noise: bool = False  # A1111 passes a per-image seeded BrownianTreeNoiseSampler
    uses_ensd: bool = False  # A1111 offsets the noise seed by "Eta noise seed delta"
    discard_penultimate_sigma: bool = False
    exact: bool = True  # same arithmetic as A1111/k-diffusion (up to float rounding, see note)
    options: tuple[tuple[str, object], ...] = ()  # fixed keyword arguments, e.g. solver_type
    eta_default: float | None = None  # A1111's default eta where the function takes one
    kind: str = "kdiffusion"
    needs_uncond: bool = False  # the model must expose last_denoised_uncond
    flow_function: Callable | None = None  # the same sampler for flow models, where its noise differs
    cfg_scale_multiplier: float = 1.0  # A1111 scales the CFG scale by this for the sampler
    note: str = ""

    @property
    def label(self) -> str:
        return self.name

    def function_for(self, schedule) -> Callable:
        """The function to run on this noise schedule (flow models need their own ancestral steps)."""
        if getattr(schedule, "is_flow", False) and self.flow_function is not None:
            return self.flow_function
        return self.function

    def accepts(self, parameter: str) -> bool:
        return parameter in inspect.signature(self.function).parameters

    def call_kwargs(self, **overrides) -> dict:
        """Keyword arguments for `function` as A1111 would pass them: the fixed options, the
        default eta, then any override the function accepts (others, e.g. s_churn for Euler a,
        are dropped as A1111 drops them). None values are ignored."""
        kwargs = dict(self.options)
        if self.eta_default is not None:
            kwargs["eta"] = self.eta_default
        for key, value in overrides.items():
            if value is not None and self.accepts(key):
                kwargs[key] = value
        return kwargs


@dataclass(frozen=True)
class Scheduler:
    """A "Schedule type": function(n, sigma_min, sigma_max, schedule, **settings) -> sigmas."""

    name: str  # API name
    label: str  # UI label
    function: Callable | None  # None for Automatic
    default_rho: float | None = None  # only Karras and Polyexponential take rho
    aliases: tuple[str, ...] = ()


_TIMESTEP_NOTE = ("same maths as A1111's VP-space loop, done in sigma space (float rounding differs); "
                  "ignores the Schedule type and uses A1111's timestep list, as A1111 does; returns the "
                  "latent A1111 returns at the final level; start it from noise * sqrt(1 + sigma_max**2) in "
                  "txt2img (initial_noise_scale)")

SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m",), dpmsolver.sample_dpmpp_2m, "Karras"),
    Sampler("DPM++ SDE", ("k_dpmpp_sde",), dpmsolver.sample_dpmpp_sde, "Karras", second_order=True,
            brownian_noise=True, eta_default=1.0),
    Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), dpmsolver.sample_dpmpp_2m_sde, "Exponential",
            brownian_noise=True, eta_default=1.0),
    Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), dpmsolver.sample_dpmpp_2m_sde, "Exponential",
            brownian_noise=True, options=(("solver_type", "heun"),), eta_default=1.0),
    Sampler("DPM++ 2S a", ("k_dpmpp_2s_a",), dpmsolver.sample_dpmpp_2s_ancestral, "Karras", second_order=True,
            uses_ensd=True, eta_default=1.0),
    Sampler("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), dpmsolver.sample_dpmpp_3m_sde, "Exponential",
            brownian_noise=True, discard_penultimate_sigma=True, eta_default=1.0),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), kdiffusion.sample_euler_ancestral, uses_ensd=True,
            eta_default=1.0, flow_function=kdiffusion.sample_euler_ancestral_flow),
    Sampler("Euler", ("k_euler",), kdiffusion.sample_euler),
    Sampler("LMS", ("k_lms",), kdiffusion.sample_lms,
            note="integration weights by Gauss-Legendre quadrature instead of scipy's quad; both are exact "
                 "for these cubic integrands"),
    Sampler("Heun", ("k_heun",), kdiffusion.sample_heun, second_order=True),
    Sampler("DPM2", ("k_dpm_2",), kdiffusion.sample_dpm_2, "Karras", second_order=True,
            discard_penultimate_sigma=True),
    Sampler("DPM2 a", ("k_dpm_2_a",), kdiffusion.sample_dpm_2_ancestral, "Karras", second_order=True,
            uses_ensd=True, discard_penultimate_sigma=True, eta_default=1.0),
    Sampler("DPM fast", ("k_dpm_fast",), dpmsolver.sample_dpm_fast, uses_ensd=True, eta_default=1.0,
            note="uses only the first and last non-zero sigma (A1111 txt2img: the model's extremes)"),
    Sampler("DPM adaptive", ("k_dpm_ad",), dpmsolver.sample_dpm_adaptive, uses_ensd=True, eta_default=1.0,
            note="step count chosen by error control; uses only the first and last non-zero sigma"),
    Sampler("Restart", ("restart",), kdiffusion.sample_restart, "Karras", second_order=True,
            note="from 20 steps on it rebuilds a Karras schedule and adds restart segments, as A1111 does"),
    Sampler("DDIM", ("ddim",), timestep.sample_ddim, kind="timesteps", eta_default=0.0, note=_TIMESTEP_NOTE),
    Sampler("DDIM CFG++", ("ddim_cfgpp",), timestep.sample_ddim_cfgpp, kind="timesteps", eta_default=0.0,
            needs_uncond=True, cfg_scale_multiplier=1 / 12.5, note=_TIMESTEP_NOTE),
    Sampler("PLMS", ("plms",), timestep.sample_plms, kind="timesteps", note=_TIMESTEP_NOTE),
    Sampler("UniPC", ("unipc",), timestep.sample_unipc, kind="unipc", exact=False,
            options=(("order", 3), ("variant", "bh1"), ("lower_order_final", True)),
            note="A1111's UniPC (bh1, order 3) on its time grid; coefficients from log sigma rather than "
                 "UniPC's log-alpha interpolation, so results differ slightly. " + _TIMESTEP_NOTE),
    Sampler("LCM", ("k_lcm",), kdiffusion.sample_lcm, kind="lcm",
            note="sigmas come from LCM's 50-level table (schedules.LCMSchedule); the model wrapper must "
                 "use LCMSchedule.sigma_to_t and boundary_scalings as A1111's LCM denoiser does"),
)


# Adapters from the common scheduler signature to the schedule functions.
def _uniform(n, lo, hi, model, **_):
    return schedules.uniform_sigmas(n, model)


def _karras(n, lo, hi, model, rho=7.0, **_):
    return schedules.karras_sigmas(n, lo, hi, rho)


def _exponential(n, lo, hi, model, **_):
    return schedules.exponential_sigmas(n, lo, hi)


def _polyexponential(n, lo, hi, model, rho=1.0, **_):
    return schedules.polyexponential_sigmas(n, lo, hi, rho)


def _sgm_uniform(n, lo, hi, model, **_):
    return schedules.sgm_uniform_sigmas(n, lo, hi, model)


def _kl_optimal(n, lo, hi, model, **_):
    return schedules.kl_optimal_sigmas(n, lo, hi)


def _align_your_steps(n, lo, hi, model, is_sdxl=False, **_):
    return schedules.align_your_steps_sigmas(n, is_sdxl)


def _simple(n, lo, hi, model, **_):
    return schedules.simple_sigmas(n, model)


def _normal(n, lo, hi, model, **_):
    return schedules.normal_sigmas(n, lo, hi, model)


def _ddim(n, lo, hi, model, **_):
    return schedules.ddim_sigmas(n, model)


def _beta(n, lo, hi, model, beta_alpha=0.6, beta_beta=0.6, **_):
    return schedules.beta_sigmas(n, lo, hi, beta_alpha, beta_beta)


SCHEDULERS: tuple[Scheduler, ...] = (
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", _uniform),
    Scheduler("karras", "Karras", _karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", _exponential),
    Scheduler("polyexponential", "Polyexponential", _polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", _sgm_uniform, aliases=("SGMUniform",)),
    Scheduler("kl_optimal", "KL Optimal", _kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", _align_your_steps),
    Scheduler("simple", "Simple", _simple),
    Scheduler("normal", "Normal", _normal),
    Scheduler("ddim", "DDIM", _ddim),
    Scheduler("beta", "Beta", _beta),
)


def _key(name: str) -> str:
    return " ".join(str(name).split()).casefold()


_SAMPLER_INDEX = {_key(n): s for s in SAMPLERS for n in (s.name, *s.aliases)}
_SCHEDULER_INDEX = {_key(n): s for s in SCHEDULERS for n in (s.name, s.label, *s.aliases)}


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def scheduler_labels() -> list[str]:
    return [s.label for s in SCHEDULERS]


def find_sampler(name: str) -> Sampler:
    """The sampler with this UI label or alias (case-insensitive)."""
    found = _SAMPLER_INDEX.get(_key(name))
    if found is None:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(sampler_names())}")
    return found


def find_scheduler(name: str | None) -> Scheduler:
    """The scheduler with this UI label, API name or alias (case-insensitive); None is Automatic."""
    found = _SCHEDULER_INDEX.get(_key(name if name is not None else "automatic"))
    if found is None:
        raise ValueError(f"unknown scheduler {name!r}; valid schedulers: {', '.join(scheduler_labels())}")
    return found


def split_sampler_name(name: str, convert_automatic: bool = False) -> tuple[str, str | None]:
    """A1111's API reading of a sampler name: "DPM++ 2M Karras" is DPM++ 2M with Karras.

    Returns (sampler label, scheduler label or None). With `convert_automatic`, a scheduler that
    is the sampler's own default becomes None, as A1111's API does before writing infotext.
    Raises ValueError (listing the valid samplers) when no sampler matches.
    """
    key = _key(name)
    if key in _SAMPLER_INDEX:
        return _SAMPLER_INDEX[key].name, None
    for scheduler in SCHEDULERS:
        for option in (scheduler.label, scheduler.name, *scheduler.aliases):
            suffix = " " + _key(option)
            if key.endswith(suffix) and key[: -len(suffix)] in _SAMPLER_INDEX:
                sampler = _SAMPLER_INDEX[key[: -len(suffix)]]
                if convert_automatic and sampler.default_scheduler == scheduler.label:
                    return sampler.name, None
                return sampler.name, scheduler.label
    find_sampler(name)  # raises with the list
    raise AssertionError("unreachable")


def initial_noise_scale(sampler: Sampler | str, sigmas: torch.Tensor):
    """What to multiply unit noise by to start txt2img: sigmas[0] for the k-diffusion samplers,
    sqrt(1 + sigmas[0]**2) for the timestep ones (A1111 starts those from unit-variance z)."""
    sampler = find_sampler(sampler) if isinstance(sampler, str) else sampler
    if sampler.kind in ("timesteps", "unipc"):
        return (1 + sigmas[0] ** 2) ** 0.5
    return sigmas[0]


def build_sigmas(sampler: Sampler | str, scheduler_name: str | None, steps: int, schedule: DiscreteSchedule,
                 device=None, *, is_sdxl: bool = False, sigma_min: float | None = None, sigma_max: float | None = None,
                 rho: float | None = None, beta_alpha: float = 0.6, beta_beta: float = 0.6,
                 always_discard_penultimate: bool = False) -> torch.Tensor:
    """The sigmas A1111 would sample `steps` steps with, as a float32 tensor on `device`.

    Rules, as in A1111 1.10: "Automatic" (or None) is the sampler's default scheduler, or the
    model's own uniform-in-timestep schedule when it has none; samplers that discard the
    penultimate sigma get one step more and then drop the next-to-last level; the timestep
    samplers (DDIM, DDIM CFG++, PLMS, UniPC) ignore the scheduler and use A1111's timestep list;
    LCM reads LCM's 50-level table. sigma_min / sigma_max / rho override the model's values (rho
    only for Karras and Polyexponential), like A1111's "Schedule min sigma" etc. settings.
    """
    sampler = find_sampler(sampler) if isinstance(sampler, str) else sampler
    scheduler = find_scheduler(scheduler_name)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    discard = sampler.discard_penultimate_sigma or always_discard_penultimate
    if discard:
        steps += 1

    if sampler.kind == "timesteps":
        sigmas = schedules.timestep_sampler_sigmas(steps, schedule)
        return sigmas.to(device) if device is not None else sigmas
    if sampler.kind == "unipc":
        sigmas = schedules.unipc_sigmas(steps, schedule)
        return sigmas.to(device) if device is not None else sigmas
    if sampler.kind == "lcm" and not isinstance(schedule, LCMSchedule):
        schedule = LCMSchedule(schedule.alphas_cumprod)

    if scheduler.function is None:
        scheduler = find_scheduler(sampler.default_scheduler) if sampler.default_scheduler else None
    if scheduler is None:
        sigmas = schedule.get_sigmas(steps).cpu()
    else:
        lo = sigma_min if sigma_min else schedule.sigma_min
        hi = sigma_max if sigma_max else schedule.sigma_max
        extra = {"is_sdxl": is_sdxl, "beta_alpha": beta_alpha, "beta_beta": beta_beta}
        if scheduler.default_rho is not None and rho:
            extra["rho"] = rho
        sigmas = scheduler.function(steps, lo, hi, schedule, **extra)
    if discard and len(sigmas) >= 3:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    sigmas = sigmas.to(torch.float32)
    return sigmas.to(device) if device is not None else sigmas
