"""A1111's timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC), rewritten in sigma space.

A1111 runs these on the variance-preserving latent z = x / sqrt(1 + sigma**2) with the UNet's
noise prediction. In sigma space the same updates read as below (eps = (x - denoised) / sigma);
the maths is identical, only float32 rounding differs. Two boundary conventions follow A1111:
  * their schedules (schedules.timestep_sampler_sigmas / unipc_sigmas) end at t=1 or t=0, not
    at sigma 0, and the result is returned as A1111's latent at that level, i.e. divided by
    sqrt(1 + sigma_last**2) (a no-op when the schedule does end at 0);
  * in txt2img A1111 starts them from unit-variance z, which in sigma space is
    noise * sqrt(1 + sigma_max**2) rather than noise * sigma_max (registry.initial_noise_scale).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .kdiffusion import report_step, gaussian_noise_sampler


def _vp_latent(x, sigma_last: float):
    return x / math.sqrt(1.0 + sigma_last**2) if sigma_last > 0 else x


def _ddim_update(x0, eps_dir, sigma_next: float, sigma: float, eta: float, noise_sampler, sigmas, i):
    """x at sigma_next from x0 and a noise direction; eta > 0 swaps part of it for fresh noise."""
    if eta and sigma_next > 0:
        a, a_next = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
        # DDIM's sigma_t (in z units) and what is left for the deterministic direction.
        s_vp = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
        keep = math.sqrt(max(1 - a_next - s_vp**2, 0.0) / a_next)
        return x0 + keep * eps_dir + (s_vp / math.sqrt(a_next)) * noise_sampler(sigmas[i], sigmas[i + 1])
    return x0 + sigmas[i + 1] * eps_dir


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, noise_sampler=None):
    """DDIM (Song et al., 2021). With eta=0 a DDIM step is exactly an Euler step in sigma."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        x = _ddim_update(denoised, eps, sig[i + 1], sig[i], eta, noise_sampler, sigmas, i)
    return _vp_latent(x, sig[-1])


@torch.no_grad()
def sample_ddim_cfgpp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, noise_sampler=None):
    """DDIM CFG++ (Chung et al., 2024): the guided x0, but the unconditional noise direction.

    The model must expose the unconditional denoised estimate of its latest call as
    `model.last_denoised_uncond`, and its CFG scale must be the user's divided by 12.5
    (registry: needs_uncond, cfg_scale_multiplier).
    """
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = getattr(model, "last_denoised_uncond", None)
        if uncond is None:
            raise RuntimeError("DDIM CFG++ needs model.last_denoised_uncond (the unconditional denoised estimate)")
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps_uncond = (x - uncond) / sigmas[i]
        x = _ddim_update(denoised, eps_uncond, sig[i + 1], sig[i], eta, noise_sampler, sigmas, i)
    return _vp_latent(x, sig[-1])


# Adams-Bashforth weights on an equally spaced grid, newest derivative first.
_AB_WEIGHTS = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


@torch.no_grad()
def sample_plms(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """PLMS (Liu et al., 2022): pseudo linear multistep on the noise prediction.

    The first step is a pseudo improved-Euler (Heun) step; later ones combine the current and
    up to three previous noise predictions with Adams-Bashforth weights, as if the steps were
    evenly spaced (they are, in timestep), and move x along that direction.
    """
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    history = []  # previous noise predictions, newest last
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if not history and sig[i + 1] > 0:
            x_next = x + eps * dt
            eps_next = (x_next - model(x_next, sigmas[i + 1] * s_in, **extra_args)) / sigmas[i + 1]
            direction = (eps + eps_next) / 2
        else:
            weights = _AB_WEIGHTS[len(history)]
            direction = weights[0] * eps
            for w, old in zip(weights[1:], reversed(history)):
                direction = direction + w * old
        x = x + direction * dt
        history.append(eps)
        if len(history) > 3:
            history.pop(0)
    return _vp_latent(x, sig[-1])


@torch.no_grad()
def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=None, order=3, variant="bh1",
                 lower_order_final=True):
    """UniPC multistep predictor-corrector (Zhao et al., 2023) with data prediction.

    A1111's defaults: variant bh1, order 3, lower order on the last steps, no corrector on the
    final one. One model call per step; the corrector's call at each new level is reused as the
    next step's history. Not bit-identical to A1111: its coefficients come from lambdas that
    A1111 interpolates in log alpha over continuous time, ours from the sigmas themselves
    (float64 on the host); the two differ only between table entries and only slightly.
    """
    if variant not in ("bh1", "bh2"):
        raise ValueError("variant must be 'bh1' or 'bh2'")
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    steps = len(sig) - 1
    if steps < 1:
        return _vp_latent(x, sig[-1])
    order = max(1, min(order, steps))
    lams = [-math.log(s) if s > 0 else math.inf for s in sig]

    denoised = model(x, sigmas[0] * s_in, **extra_args)
    history, history_idx = [denoised], [0]
    for step in range(1, steps + 1):
        report_step(callback, x, step - 1, sigmas[step - 1], sigmas[step - 1], history[-1])
        if step < order:
            step_order, use_corrector = step, True
        else:
            step_order = min(order, steps + 1 - step) if lower_order_final else order
            use_corrector = step < steps
        if sig[step] == 0:
            # A step to sigma 0 can only land on the latest estimate.
            x, model_x = history[-1], None
        else:
            x, model_x = _unipc_step(model, x, sigmas, step, history, history_idx, lams, step_order,
                                     use_corrector, variant, s_in, extra_args)
        if step < steps:
            if model_x is None:
                model_x = model(x, sigmas[step] * s_in, **extra_args)
            history.append(model_x)
            history_idx.append(step)
            if len(history) > order:
                history.pop(0)
                history_idx.pop(0)
    return _vp_latent(x, sig[-1])


def _unipc_step(model, x, sigmas, step, history, history_idx, lams, order, use_corrector, variant, s_in, extra_args):
    m0 = history[-1]
    lam0, lam_t = lams[history_idx[-1]], lams[step]
    h = lam_t - lam0
    # Ratios of the earlier steps to this one, and divided differences of the estimates.
    rks, d1s = [], []
    for k in range(1, order):
        rk = (lams[history_idx[-(k + 1)]] - lam0) / h
        rks.append(rk)
        d1s.append((history[-(k + 1)] - m0) / rk)
    rks.append(1.0)

    hh = -h  # data prediction integrates in -lambda
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    rows, rhs = [], []
    for k in range(1, order + 1):
        rows.append([rk ** (k - 1) for rk in rks])
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    rows, rhs = np.asarray(rows), np.asarray(rhs)

    x_base = (sigmas[step] / sigmas[history_idx[-1]]) * x - h_phi_1 * m0
    x_t = x_base
    if d1s:
        rhos_p = [0.5] if order == 2 else np.linalg.solve(rows[:-1, :-1], rhs[:-1]).tolist()
        x_t = x_base - b_h * sum(float(r) * d for r, d in zip(rhos_p, d1s))
    model_t = None
    if use_corrector:
        rhos_c = [0.5] if order == 1 else np.linalg.solve(rows, rhs).tolist()
        model_t = model(x_t, sigmas[step] * s_in, **extra_args)
        correction = rhos_c[-1] * (model_t - m0)
        for r, d in zip(rhos_c[:-1], d1s):
            correction = correction + r * d
        x_t = x_base - b_h * correction
    return x_t, model_t
