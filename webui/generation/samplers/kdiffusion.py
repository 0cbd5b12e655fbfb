"""Karras-style ODE/SDE samplers in the k-diffusion convention (Euler, Heun, DPM2, LMS, ...).

Convention shared by every sampler in this package:
    sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> x
`model(x, sigma_batch, **extra_args)` returns the denoised estimate; `x` arrives as
noise * sigmas[0]; `callback` gets {"x", "i", "sigma", "sigma_hat", "denoised"} once per step;
`disable` (a progress-bar switch elsewhere) is ignored. Samplers that draw noise take
`noise_sampler(sigma, sigma_next) -> tensor like x`, Gaussian by default.

The update formulas follow k-diffusion's (the sampling code A1111 runs) operation by operation,
so the same inputs give the same floats. Branches on sigma values are decided on the host from
one copy of the schedule made before the loop, so fixed-step loops never wait on the device
(DPM adaptive's error control and torchsde's Brownian tree are the exceptions).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .schedules import karras_sigmas


def gaussian_noise_sampler(x: torch.Tensor):
    """Default noise source: fresh standard normal noise shaped like x at every call."""
    return lambda sigma, sigma_next: torch.randn_like(x)


def to_d(x, sigma, denoised):
    """The probability-flow ODE's dx/dsigma, from the denoiser's output."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step into a deterministic part down to sigma_down and fresh noise of size sigma_up.

    sigma_down**2 + sigma_up**2 == sigma_to**2; eta scales the noise (0: deterministic, 1: DDPM).
    """
    if not eta:
        return sigma_to, 0.0
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def host_sigma_down(sigma_from: float, sigma_to: float, eta: float) -> float:
    """ancestral_step's sigma_down as a Python float, for deciding branches without a device sync."""
    if not eta or sigma_to == 0:
        return sigma_to
    up = min(sigma_to, eta * math.sqrt(max(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2, 0.0)))
    return math.sqrt(max(sigma_to**2 - up**2, 0.0))


def _churn(s_churn, s_tmin, s_tmax, sigma: float, steps: int) -> float:
    # Karras et al.'s "churn": raise the noise level by a factor (1 + gamma) before the step.
    if s_churn <= 0 or not s_tmin <= sigma <= s_tmax:
        return 0.0
    return min(s_churn / steps, 2**0.5 - 1)


def report_step(callback, x, i, sigma, sigma_hat, denoised):
    """Call the per-step callback, if any, with the keys every sampler reports."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def _churned_start(x, sigmas, sig, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler):
    """sigma_hat for step i, and x with the churn noise added when gamma > 0."""
    if s_churn <= 0:
        return x, sigmas[i]
    # With churn on, draw noise every step (as k-diffusion does) so seeded streams line up.
    eps = noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise
    gamma = _churn(s_churn, s_tmin, s_tmax, sig[i], len(sig) - 1)
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2, with churn)."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x, sigma_hat = _churned_start(x, sigmas, sig, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report_step(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """Euler down to sigma_down, then fresh noise up to the next level ("Euler a")."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        x = x + d * (sigma_down - sigmas[i])
        if sig[i + 1] > 0 and eta:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_ancestral_flow(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                                noise_sampler=None):
    """"Euler a" for flow models, where x = (1 - sigma) x0 + sigma noise: Euler down to sigma_down, then the
    signal is scaled up to the next level's share and fresh noise fills the rest of its variance.
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta): eta 0 is plain Euler."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sig[i + 1] == 0 or not eta:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        sigma_down = sig[i + 1] * (1 + (sig[i + 1] / sig[i] - 1) * eta)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sig[i])
        signal_scale = (1 - sig[i + 1]) / (1 - sigma_down)
        renoise = max(sig[i + 1] ** 2 - (signal_scale * sigma_down) ** 2, 0.0) ** 0.5
        x = x * signal_scale + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun's second-order method (Karras et al. 2022, Algorithm 2); Euler for the step to 0."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x, sigma_hat = _churned_start(x, sigmas, sig, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report_step(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sig[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2-style midpoint steps, the midpoint at the geometric mean of the two sigmas."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x, sigma_hat = _churned_start(x, sigmas, sig, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report_step(callback, x, i, sigmas[i], sigma_hat, denoised)
        if sig[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """DPM2 midpoint steps down to sigma_down, then fresh noise ("DPM2 a")."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if host_sigma_down(sig[i], sig[i + 1], eta) == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigma_down - sigmas[i])
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


# Gauss-Legendre nodes and weights on [-1, 1]; 4 points integrate polynomials up to degree 7
# exactly, and LMS's Lagrange basis polynomials have degree 3 at most.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(4)


def lms_coefficient(order: int, t, i: int, j: int) -> float:
    """Integral over [t[i], t[i+1]] of the Lagrange basis polynomial through t[i], ..., t[i-order+1]
    that is 1 at t[i-j]: the weight of the j-th newest derivative in a linear multistep step."""
    if order - 1 > i:
        raise ValueError(f"order {order} is too high for step {i}")
    # Knot differences are taken in the knots' own dtype: for float32 sigmas that is float32, as
    # in k-diffusion's numpy code, so the weights come out the same.
    knots = np.asarray(t)
    if not np.issubdtype(knots.dtype, np.floating):
        knots = knots.astype(np.float64)
    a, b = float(knots[i]), float(knots[i + 1])
    taus = (b - a) / 2 * _GL_NODES + (a + b) / 2
    basis = np.ones_like(taus)
    for k in range(order):
        if k != j:
            basis = basis * (taus - float(knots[i - k])) / float(knots[i - j] - knots[i - k])
    return float((b - a) / 2 * np.dot(_GL_WEIGHTS, basis))


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    """Linear multistep (Adams-Bashforth on the sigma grid) using up to `order` past derivatives."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.detach().cpu().numpy()
    ds = []
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        cur_order = min(i + 1, order)
        coeffs = [lms_coefficient(cur_order, sig, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model sampling: jump to the model's x0, re-noise to the next level."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sig[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_restart(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, restart_list=None,
                   noise_sampler=None):
    """Restart sampling (Xu et al., 2023) as A1111 sets it up, over Heun steps.

    `restart_list` maps a sigma to [restart_steps, restart_times, restart_max_sigma]. Left as
    None it follows A1111: from 20 steps on, the schedule is rebuilt as Karras with fewer steps
    and the freed steps are spent re-noising from sigma 0.1 back up to 2 and descending again
    (once; twice from 36 steps). Callbacks come once per Heun step, restarts included.
    """
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    steps = sigmas.shape[0] - 1
    if restart_list is None:
        restart_list = {}
        if steps >= 20:
            restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
            host = sigmas.tolist()
            sigmas = karras_sigmas(steps - restart_steps * restart_times, host[-2], host[0]).to(sigmas.device)
            restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
    table = sigmas.detach().cpu().float()

    def nearest(value):
        return int(torch.argmin((table - value).abs()))

    restart_at = {nearest(key): value for key, value in restart_list.items()}
    # (from, to) pairs as device tensors, with host floats beside them for the branch decisions.
    pairs = []
    host = table.tolist()
    for i in range(len(host) - 1):
        pairs.append((sigmas[i], sigmas[i + 1], host[i], host[i + 1]))
        if i + 1 in restart_at:
            restart_steps, restart_times, restart_max = restart_at[i + 1]
            low_idx, high_idx = i + 1, nearest(restart_max)
            if high_idx < low_idx:
                ladder = karras_sigmas(restart_steps, host[low_idx], host[high_idx])[:-1]
                ladder_dev, ladder_host = ladder.to(sigmas.device), ladder.tolist()
                for _ in range(restart_times):
                    pairs.extend(
                        (ladder_dev[k], ladder_dev[k + 1], ladder_host[k], ladder_host[k + 1])
                        for k in range(len(ladder_host) - 1)
                    )

    last = None
    for step_id, (old_sigma, new_sigma, old_host, new_host) in enumerate(pairs):
        if last is not None and last[1] < old_host:
            # Jump back up the noise ladder with fresh noise.
            x = x + noise_sampler(last[0], old_sigma) * s_noise * (old_sigma**2 - last[0] ** 2) ** 0.5
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = to_d(x, old_sigma, denoised)
        report_step(callback, x, step_id, new_sigma, old_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_host == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, new_sigma * s_in, **extra_args)
            d_2 = to_d(x_2, new_sigma, denoised_2)
            x = x + (d + d_2) / 2 * dt
        last = (new_sigma, new_host)
    return x
