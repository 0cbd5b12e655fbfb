"""Sigma schedules ("Schedule type" in A1111's UI) and the model's discrete noise table.

Every schedule function returns a 1-D float32 CPU tensor of noise levels, highest first. Most
end in 0 after n levels (n + 1 values); the exceptions are A1111's own and kept on purpose:
KL Optimal ends at sigma_min (no 0 appended), DDIM yields ceil((N - 1) / (N // n)) levels, and
the timestep samplers' schedules end at the noise level of t=1 or t=0 rather than at 0.

The arithmetic follows A1111 (v1.10) and k-diffusion step by step, in the same dtypes, so the
sigmas agree with theirs to the bit wherever the platform's float32 kernels do.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...families.sd import scaled_linear_alphas_cumprod as sd_alphas_cumprod  # noqa: F401 (re-export)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


class DiscreteSchedule:
    """The noise levels a DDPM-trained model knows: sigma_t = sqrt((1 - abar_t) / abar_t).

    Timesteps and sigmas are mapped onto each other by linear interpolation in log sigma, as
    k-diffusion's wrappers do, so a sigma between two table entries gets a fractional timestep.
    """

    def __init__(self, alphas_cumprod):
        abar = torch.as_tensor(alphas_cumprod).detach()
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError("alphas_cumprod must be a 1-D table with at least two entries")
        abar = abar.to(torch.float32)
        self.alphas_cumprod = abar
        self.sigmas = ((1 - abar) / abar) ** 0.5  # ascending in t
        self.log_sigmas = self.sigmas.log()
        # One host copy at construction, so schedule builders never sync later.
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])

    def __len__(self) -> int:
        return self.sigmas.shape[0]

    def to(self, device) -> "DiscreteSchedule":
        """The same schedule with its tables on `device` (for per-step sigma_to_t in a model wrapper)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        for name in ("alphas_cumprod", "sigmas", "log_sigmas"):
            setattr(clone, name, getattr(self, name).to(device))
        return clone

    def sigma_to_t(self, sigma, quantize: bool = False) -> torch.Tensor:
        """Fractional timestep of each sigma (nearest table index when `quantize`)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=self.log_sigmas.device)
        log_sigma = sigma.log()
        if quantize:
            dists = log_sigma.reshape(1, -1) - self.log_sigmas[:, None]
            return dists.abs().argmin(dim=0).view(sigma.shape)
        # Index of the last table entry at or below each sigma, kept inside [0, N - 2].
        low_idx = torch.searchsorted(self.log_sigmas, log_sigma.reshape(-1), right=True) - 1
        low_idx = low_idx.clamp(min=0, max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma.reshape(-1)) / (low - high)).clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.log_sigmas.device).float().clamp(0, len(self) - 1)
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()

    def get_sigmas(self, n: int) -> torch.Tensor:
        """n levels evenly spaced in timestep from the last to t=0, then 0 (A1111's "Uniform")."""
        t = torch.linspace(len(self) - 1, 0, n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))


def shift_sigmas(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow matching's timestep shift: more of the steps at high noise for shift > 1 (SD3: 3, Flux: e**mu)."""
    return shift * t / (1 + (shift - 1) * t)


class FlowSchedule(DiscreteSchedule):
    """The noise levels of a flow-matching model (SD3, Flux): x = (1 - sigma) * x0 + sigma * noise.

    The table holds the 1000 shifted levels sigma(t) = shift(t / 1000) for t = 1..1000, so the schedule
    types that read a model's table (Uniform, Simple, Normal, SGM Uniform, DDIM) pick from it as they
    do for a discrete model; Uniform is the models' own schedule (diffusers' FlowMatchEuler). The network's
    timestep is sigma itself (times 1000 for SD3), which the family computes, not `sigma_to_t`.
    """

    is_flow = True

    def __init__(self, shift: float = 1.0, steps: int = 1000):
        self.shift = float(shift)
        self.steps = steps
        t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        sigmas = shift_sigmas(t, self.shift)
        self.sigmas = sigmas.to(torch.float32)  # ascending in t
        self.log_sigmas = self.sigmas.log()
        # The variance-preserving equivalent, for code that reads a table of alphas (nothing offered on flow).
        self.alphas_cumprod = ((1 - sigmas) ** 2 / ((1 - sigmas) ** 2 + sigmas**2)).to(torch.float32)
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])

    def sigma_to_t(self, sigma, quantize: bool = False) -> torch.Tensor:
        """Table index of each sigma: the inverse shift, exact (index t holds timestep t + 1)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=self.sigmas.device).clamp(1e-9, 1)
        t = sigma / (self.shift - (self.shift - 1) * sigma) * self.steps - 1
        t = t.round() if quantize else t
        return t.to(torch.float32)

    def t_to_sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.sigmas.device).to(torch.float64).clamp(0, self.steps - 1)
        return shift_sigmas((t + 1) / self.steps, self.shift).to(torch.float32)


class LCMSchedule(DiscreteSchedule):
    """The 50-level table A1111's LCM sampler sees: every 20th timestep, ending at t=999.

    The model wrapper for LCM must run the UNet at `sigma_to_t(sigma)` (always one of
    19, 39, ..., 999) and finish with `boundary_scalings`, as A1111's LCM denoiser does.
    """

    def __init__(self, alphas_cumprod, original_steps: int = 50):
        abar = torch.as_tensor(alphas_cumprod).detach().to(torch.float32)
        total = abar.shape[0]
        self.skip_steps = max(total // original_steps, 1)
        picked = (total - 1) - self.skip_steps * torch.arange(original_steps - 1, -1, -1)
        super().__init__(abar[picked])
        self.full_alphas_cumprod = abar

    def sigma_to_t(self, sigma, quantize: bool = True) -> torch.Tensor:
        index = super().sigma_to_t(sigma, quantize=True)
        return index * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.log_sigmas.device)
        index = ((t - (self.skip_steps - 1)) / self.skip_steps).float().clamp(0, len(self) - 1)
        return super().t_to_sigma(index)

    def get_sigmas(self, n: int) -> torch.Tensor:
        start = float(self.sigma_to_t(torch.tensor(self.sigma_max)))
        end = float(self.sigma_to_t(torch.tensor(self.sigma_min)))
        return append_zero(self.t_to_sigma(torch.linspace(start, end, n)))

    def boundary_scalings(self, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_skip, c_out) of LCM's consistency boundary: denoised = c_out * x0_pred + c_skip * x."""
        scaled_t = self.sigma_to_t(sigma).to(torch.float32) * 10.0
        sigma_data = 0.5
        c_skip = sigma_data**2 / (scaled_t**2 + sigma_data**2)
        c_out = scaled_t / (scaled_t**2 + sigma_data**2) ** 0.5
        return c_skip, c_out


# --- schedules that need only sigma_min / sigma_max -------------------------------------------


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): evenly spaced in sigma ** (1 / rho)."""
    ramp = torch.linspace(0, 1, n)
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return append_zero((top + ramp * (bottom - top)) ** rho)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in log sigma."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """log sigma a polynomial (degree rho) of the step; rho 1 is the exponential schedule."""
    ramp = torch.linspace(1, 0, n) ** rho
    log_min = math.log(sigma_min)
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - log_min) + log_min))


def kl_optimal_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in arctan(sigma) (Sabour et al., 2024). A1111 ends it at sigma_min, not 0."""
    angle_min = torch.arctan(torch.tensor(sigma_min))
    angle_max = torch.arctan(torch.tensor(sigma_max))
    frac = torch.arange(n + 1) / n
    return torch.tan(frac * angle_min + (1.0 - frac) * angle_max)


# NVIDIA's published 10-step "Align Your Steps" sigmas (highest first).
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def align_your_steps_sigmas(n: int, is_sdxl: bool = False) -> torch.Tensor:
    """AYS constants stretched to n levels by linear interpolation of log sigma, then 0."""
    table = AYS_SDXL if is_sdxl else AYS_SD1
    if n == len(table):
        return torch.tensor([*table, 0.0], dtype=torch.float32)
    ascending_logs = np.log(np.asarray(table[::-1], dtype=np.float64))
    positions = np.linspace(0, 1, len(table))
    wanted = np.interp(np.linspace(0, 1, n), positions, ascending_logs)
    return torch.tensor(np.append(np.exp(wanted)[::-1], [0.0]), dtype=torch.float32)


def beta_sigmas(n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """A1111's "Beta" (Lee et al., 2024): sigma linear in the Beta(alpha, beta) quantile of the step."""
    quantiles = beta_ppf(1 - np.linspace(0, 1, n), alpha, beta)
    return torch.tensor(np.append(sigma_min + quantiles * (sigma_max - sigma_min), [0.0]), dtype=torch.float32)


# --- schedules that read the model's table ----------------------------------------------------


def uniform_sigmas(n: int, schedule: DiscreteSchedule) -> torch.Tensor:
    return schedule.get_sigmas(n).cpu()


def sgm_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, schedule: DiscreteSchedule) -> torch.Tensor:
    """n + 1 timesteps evenly spaced from sigma_max's to sigma_min's, the last replaced by 0."""
    start = float(schedule.sigma_to_t(torch.tensor(sigma_max)))
    end = float(schedule.sigma_to_t(torch.tensor(sigma_min)))
    t = torch.linspace(start, end, n + 1)[:-1]
    return append_zero(schedule.t_to_sigma(t).cpu())


def normal_sigmas(n: int, sigma_min: float, sigma_max: float, schedule: DiscreteSchedule) -> torch.Tensor:
    """n timesteps evenly spaced from sigma_max's to sigma_min's, then 0."""
    start = float(schedule.sigma_to_t(torch.tensor(sigma_max)))
    end = float(schedule.sigma_to_t(torch.tensor(sigma_min)))
    return append_zero(schedule.t_to_sigma(torch.linspace(start, end, n)).cpu())


def simple_sigmas(n: int, schedule: DiscreteSchedule) -> torch.Tensor:
    """Every (N / n)-th table entry counted down from the top."""
    table = schedule.sigmas.cpu()
    stride = len(table) / n
    picked = [float(table[-(1 + int(k * stride))]) for k in range(n)]
    return torch.tensor([*picked, 0.0], dtype=torch.float32)


def ddim_sigmas(n: int, schedule: DiscreteSchedule) -> torch.Tensor:
    """Table entries 1, 1 + N//n, 1 + 2(N//n), ... reversed, then 0 (may give more than n levels)."""
    table = schedule.sigmas.cpu()
    stride = max(len(table) // n, 1)
    picked = [float(table[k]) for k in range(1, len(table), stride)]
    return torch.tensor([*picked[::-1], 0.0], dtype=torch.float32)


# --- the timestep samplers' own schedules (DDIM, PLMS, UniPC) ---------------------------------


def a1111_timesteps(steps: int, total: int = 1000) -> torch.Tensor:
    """A1111's timestep list for DDIM/PLMS/UniPC: 1, 1 + total//steps, ... (ascending).

    A1111 runs one step fewer than the list is long. For steps=1 its list is [1] and it runs no
    step at all; we use [1, total - 1] there so one step is taken.
    """
    stride = max(total // steps, 1)
    timesteps = (torch.arange(0, total, stride) + 1).clamp(0, total - 1)
    if timesteps.numel() < 2:
        timesteps = torch.tensor([1, total - 1])
    return timesteps


def timestep_sampler_sigmas(steps: int, schedule: DiscreteSchedule) -> torch.Tensor:
    """DDIM/PLMS noise levels: the table at A1111's timesteps, highest first, ending at t=1."""
    timesteps = a1111_timesteps(steps, len(schedule))
    return schedule.sigmas.cpu()[timesteps].flip(0)


def unipc_sigmas(steps: int, schedule: DiscreteSchedule) -> torch.Tensor:
    """UniPC's grid: len(a1111_timesteps) steps evenly spaced in time from t=N-1 down to t=0.

    A1111 hands UniPC as many steps as its DDIM timestep list is long, on a continuous time
    grid; these sigmas sit at the same model timesteps (interpolated in log sigma).
    """
    total = len(schedule)
    count = a1111_timesteps(steps, total).numel()
    t_continuous = torch.linspace(1.0, 1.0 / total, count + 1)
    model_t = (t_continuous - 1.0 / total) * float(total)
    return schedule.t_to_sigma(model_t).cpu()


# --- the Beta distribution's quantile function, without scipy ---------------------------------


def _beta_continued_fraction(a, b, x):
    """Modified Lentz evaluation of the continued fraction of the incomplete beta function."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for coeff in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + coeff * d
            d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
            c = 1.0 + coeff / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            delta = d * c
            h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return h


def beta_cdf(x, alpha: float, beta: float):
    """Regularized incomplete beta I_x(alpha, beta), float64, vectorised over x."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    inner = (x > 0) & (x < 1)
    xi = np.where(inner, x, 0.5)
    # The fraction converges fast below the mean; above it use I_x(a, b) = 1 - I_{1-x}(b, a).
    flip = xi > (alpha + 1.0) / (alpha + beta + 2.0)
    a = np.where(flip, beta, alpha)
    b = np.where(flip, alpha, beta)
    z = np.where(flip, 1.0 - xi, xi)
    log_beta = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    front = np.exp(a * np.log(z) + b * np.log1p(-z) - log_beta) / a
    part = front * _beta_continued_fraction(a, b, z)
    value = np.where(flip, 1.0 - part, part)
    return np.where(inner, value, x)


def beta_ppf(p, alpha: float, beta: float):
    """Quantile function of Beta(alpha, beta): Newton's method on beta_cdf, kept inside a
    shrinking bracket (bisecting whenever Newton would leave it), to float64 resolution."""
    p = np.asarray(p, dtype=np.float64)
    lo, hi = np.zeros_like(p), np.ones_like(p)
    x = np.full_like(p, 0.5)
    log_beta = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    for _ in range(100):
        error = beta_cdf(x, alpha, beta) - p
        below = error < 0
        lo, hi = np.where(below, x, lo), np.where(below, hi, x)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            density = np.exp((alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x) - log_beta)
            step = x - error / density
        bisect = 0.5 * (lo + hi)
        new = np.where(np.isfinite(step) & (step > lo) & (step < hi), step, bisect)
        done = np.abs(new - x) <= 4 * np.spacing(np.maximum(x, 1e-300))
        x = new
        if np.all(done | (hi - lo <= 4 * np.spacing(np.maximum(hi, 1e-300)))):
            break
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, x))
