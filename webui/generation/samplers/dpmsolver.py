"""DPM-Solver family (Lu et al., 2022, 2023): DPM fast/adaptive and the DPM++ samplers.

Same calling convention as kdiffusion.py. They work in lambda = -log(sigma), where the linear
part of the ODE integrates exactly; "M" samplers reuse earlier denoised estimates (multistep),
"S"/SDE ones take sub-steps. The SDE variants default to Gaussian noise; A1111 feeds them a
Brownian tree seeded per image (see noise.py), which the caller passes as `noise_sampler`.
"""

from __future__ import annotations

import math

import torch

from .kdiffusion import report_step, ancestral_step, gaussian_noise_sampler, host_sigma_down, to_d


def _lam(sigma):
    return sigma.log().neg()


def _sig(lam):
    return lam.neg().exp()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                              noise_sampler=None):
    """DPM-Solver++(2S) single-step second order, ancestral ("DPM++ 2S a")."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        if host_sigma_down(sig[i], sig[i + 1], eta) == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            lam, lam_next = _lam(sigmas[i]), _lam(sigma_down)
            h = lam_next - lam
            lam_mid = lam + 0.5 * h
            x_2 = (_sig(lam_mid) / _sig(lam)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sig(lam_mid) * s_in, **extra_args)
            x = (_sig(lam_next) / _sig(lam)) * x - (-h).expm1() * denoised_2
        if sig[i + 1] > 0 and eta:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                     noise_sampler=None, r=1 / 2):
    """DPM-Solver++ stochastic, two stages per step with the midpoint at fraction r of the step.

    Its two noise draws per step are Brownian increments over nested intervals (sigma to the
    midpoint, sigma to the next level), so they are correlated. A1111 passes a Brownian tree;
    without a noise_sampler the default draws Gaussian noise with that same correlation.
    """
    extra_args = extra_args or {}
    if noise_sampler is None:
        noise_sampler = _NestedGaussianNoise(x)
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sig[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        lam, lam_next = _lam(sigmas[i]), _lam(sigmas[i + 1])
        h = lam_next - lam
        lam_mid = lam + h * r
        fac = 1 / (2 * r)
        sigma_cur = _sig(lam)  # one tensor for both noise queries, so they can be linked
        # Stage 1: to the midpoint, splitting its noise ancestrally.
        sd, su = ancestral_step(sigma_cur, _sig(lam_mid), eta)
        lam_mid_down = _lam(sd)
        x_2 = (_sig(lam_mid_down) / sigma_cur) * x - (lam - lam_mid_down).expm1() * denoised
        x_2 = x_2 + noise_sampler(sigma_cur, _sig(lam_mid)) * s_noise * su
        denoised_2 = model(x_2, _sig(lam_mid) * s_in, **extra_args)
        # Stage 2: the full step with the blended estimate.
        sd, su = ancestral_step(sigma_cur, _sig(lam_next), eta)
        lam_next_down = _lam(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sig(lam_next_down) / sigma_cur) * x - (lam - lam_next_down).expm1() * denoised_d
        x = x + noise_sampler(sigma_cur, _sig(lam_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M): second-order multistep, first order on the first and last steps."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    old_denoised = None
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        lam, lam_next = _lam(sigmas[i]), _lam(sigmas[i + 1])
        h = lam_next - lam
        if old_denoised is None or sig[i + 1] == 0:
            x = (_sig(lam_next) / _sig(lam)) * x - (-h).expm1() * denoised
        else:
            r = (lam - _lam(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sig(lam_next) / _sig(lam)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE; solver_type "heun" is A1111's "DPM++ 2M SDE Heun"."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    old_denoised, h_last = None, None
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sig[i + 1] == 0:
            x = denoised  # the last step lands on the estimate itself
        else:
            h = _lam(sigmas[i + 1]) - _lam(sigmas[i])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    phi = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                    x = x + phi * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
            h_last = h
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None):
    """DPM-Solver++(3M) SDE: third-order multistep, ramping up from first order."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist()
    denoised_1, denoised_2 = None, None
    h_1, h_2 = None, None
    for i in range(len(sig) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report_step(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sig[i + 1] == 0:
            x = denoised
        else:
            h = _lam(sigmas[i + 1]) - _lam(sigmas[i])
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                # Divided differences of the two previous estimates give first and second derivatives.
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
    return x


class _NestedGaussianNoise:
    """Unit Gaussian noise for (sigma, sigma_next) queries, where a query that extends the previous
    interval from the same start reuses its draw, as a Brownian path would. Device-side only."""

    def __init__(self, x):
        self.x = x
        self.last = None  # (start, end, unit noise) of the previous query

    def __call__(self, sigma, sigma_next):
        fresh = torch.randn_like(self.x)
        last, self.last = self.last, None
        if last is not None and last[0] is sigma:
            start, end, previous = last
            # W(c) - W(a) = (W(b) - W(a)) + independent part; normalise by sqrt|c - a|.
            share = ((end - start) / (sigma_next - start)).clamp(0, 1)
            return share.sqrt() * previous + (1 - share).sqrt() * fresh
        self.last = (sigma, sigma_next, fresh)
        return fresh


# --- DPM-Solver with fixed (DPM fast) and adaptive step sizes ---------------------------------


class _DPMSolver:
    """DPM-Solver-1/2/3 steps in the noise-prediction form, over lambda = -log(sigma)."""

    def __init__(self, model, extra_args, report):
        self.model = model
        self.extra_args = extra_args
        self.report = report  # called as report(x, i, sigma, sigma_hat, denoised)

    def eps(self, cache, key, x, lam):
        if key not in cache:
            sigma = _sig(lam)
            cache[key] = (x - self.model(x, sigma * x.new_ones([x.shape[0]]), **self.extra_args)) / sigma
        return cache[key]

    def step_1(self, x, lam, lam_next, cache):
        h = lam_next - lam
        eps = self.eps(cache, "eps", x, lam)
        return x - _sig(lam_next) * h.expm1() * eps

    def step_2(self, x, lam, lam_next, cache, r1=1 / 2):
        h = lam_next - lam
        eps = self.eps(cache, "eps", x, lam)
        s1 = lam + r1 * h
        u1 = x - _sig(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - _sig(lam_next) * h.expm1() * eps - _sig(lam_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, lam, lam_next, cache, r1=1 / 3, r2=2 / 3):
        h = lam_next - lam
        eps = self.eps(cache, "eps", x, lam)
        s1, s2 = lam + r1 * h, lam + r2 * h
        u1 = x - _sig(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - _sig(s2) * (r2 * h).expm1() * eps
              - _sig(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - _sig(lam_next) * h.expm1() * eps - _sig(lam_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def noise_split(self, lam, lam_next, lam_end, eta):
        """Where the deterministic part lands (never past lam_end) and the noise to add after."""
        if not eta:
            return lam_next, 0.0
        sd, _ = ancestral_step(_sig(lam), _sig(lam_next), eta)
        lam_down = torch.minimum(lam_end, _lam(sd))
        return lam_down, (_sig(lam_next) ** 2 - _sig(lam_down) ** 2) ** 0.5


def _solver_bounds(sigmas, sigma_min, sigma_max):
    """(sigma_min, sigma_max) for DPM fast/adaptive: given ones, else the last and the first
    non-zero level of the schedule."""
    host = [s for s in sigmas.tolist() if s > 0]
    if not host and (sigma_min is None or sigma_max is None):
        raise ValueError("DPM fast/adaptive need at least one non-zero sigma")
    lo = float(sigma_min) if sigma_min is not None else host[-1]
    hi = float(sigma_max) if sigma_max is not None else host[0]
    return lo, hi


def _one_level(model, x, sigma, extra_args, callback):
    # A schedule with a single non-zero level leaves nothing to integrate: land on the estimate.
    denoised = model(x, torch.tensor(sigma, device=x.device) * x.new_ones([x.shape[0]]), **extra_args)
    report_step(callback, x, 0, torch.tensor(sigma), torch.tensor(sigma), denoised)
    return denoised


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                    noise_sampler=None, sigma_min=None, sigma_max=None):
    """DPM-Solver-fast: len(sigmas) - 1 model calls spread over third-order steps from the first
    to the last non-zero sigma (only those two levels of the schedule are used). A1111's txt2img
    integrates between the model's own sigma_max and sigma_min instead; pass them to match it
    whatever the schedule. A callback comes once per solver step (about a third of the calls)."""
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    sigma_min, sigma_max = _solver_bounds(sigmas, sigma_min, sigma_max)
    if sigma_min >= sigma_max:
        return _one_level(model, x, sigma_max, extra_args, callback)
    nfe = len(sigmas) - 1
    lam_start, lam_end = _lam(torch.tensor(sigma_max)), _lam(torch.tensor(sigma_min))
    solver = _DPMSolver(model, extra_args, None)
    m = nfe // 3 + 1
    lams = torch.linspace(lam_start, lam_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache = {}
        lam, lam_next = lams[i], lams[i + 1]
        lam_down, su = solver.noise_split(lam, lam_next, lam_end, eta)
        eps = solver.eps(cache, "eps", x, lam)
        report_step(callback, x, i, _sig(lam), _sig(lam), x - _sig(lam) * eps)
        step = (solver.step_1, solver.step_2, solver.step_3)[order - 1]
        x = step(x, lam, lam_down, cache)
        if eta:
            x = x + su * s_noise * noise_sampler(_sig(lam), _sig(lam_next))
    return x


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, disable=None, order=3, rtol=0.05,
                        atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0,
                        s_noise=1.0, noise_sampler=None, return_info=False, sigma_min=None, sigma_max=None):
    """DPM-Solver-12/23 with a PID step-size controller, from the first to the last non-zero sigma
    (or the given sigma_min/sigma_max, as A1111's txt2img passes the model's). The number of
    model calls is chosen by the error control, not by len(sigmas); a callback comes once per
    attempted step (rejected ones included)."""
    if order not in (2, 3):
        raise ValueError("order should be 2 or 3")
    extra_args = extra_args or {}
    noise_sampler = gaussian_noise_sampler(x) if noise_sampler is None else noise_sampler
    sigma_min, sigma_max = _solver_bounds(sigmas, sigma_min, sigma_max)
    if sigma_min >= sigma_max:
        out = _one_level(model, x, sigma_max, extra_args, callback)
        return (out, {"steps": 1, "nfe": 1, "n_accept": 1, "n_reject": 0}) if return_info else out
    lam_start, lam_end = _lam(torch.tensor(sigma_max)), _lam(torch.tensor(sigma_min))
    solver = _DPMSolver(model, extra_args, None)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    controller = _PIDController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
    s, x_prev = lam_start, x
    while s < lam_end - 1e-5:
        cache = {}
        t = torch.minimum(lam_end, s + controller.h)
        t_down, su = solver.noise_split(s, t, lam_end, eta)
        eps = solver.eps(cache, "eps", x, s)
        denoised = x - _sig(s) * eps
        if order == 2:
            x_low = solver.step_1(x, s, t_down, cache)
            x_high = solver.step_2(x, s, t_down, cache)
        else:
            x_low = solver.step_2(x, s, t_down, cache, r1=1 / 3)
            x_high = solver.step_3(x, s, t_down, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if controller.propose(error):
            x_prev = x_low
            x = x_high
            if eta:
                x = x + su * s_noise * noise_sampler(_sig(s), _sig(t))
            s = t
            info["n_accept"] += 1
        else:
            info["n_reject"] += 1
        info["nfe"] += order
        info["steps"] += 1
        report_step(callback, x, info["steps"] - 1, _sig(s), _sig(s), denoised)
    return (x, info) if return_info else x


class _PIDController:
    """PID control of the step size from the scaled local error (Söderlind's digital filters)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs = []

    def propose(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)  # soft limiter
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept
