"""Samplers and sigma schedules, checked on a problem with a known answer.

Data distributed per element as N(MU, SD**2) has the exact denoiser
    D(x, sigma) = (SD**2 * x + sigma**2 * MU) / (SD**2 + sigma**2)
and its probability-flow ODE keeps (x - MU) / sqrt(SD**2 + sigma**2) constant, so every
deterministic sampler has an exact target and every stochastic one a known output distribution.
"""

import math

import numpy as np
import pytest
import torch

from webui.generation import samplers as S
from webui.generation.samplers import registry, schedules

MU, SD = 0.3, 0.5
SCHEDULE = S.DiscreteSchedule(S.sd_alphas_cumprod())
LO, HI = SCHEDULE.sigma_min, SCHEDULE.sigma_max

A1111_SAMPLER_ORDER = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
    "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
    "PLMS", "UniPC", "LCM",
]
A1111_SCHEDULERS = [
    ("Automatic", "automatic"), ("Uniform", "uniform"), ("Karras", "karras"), ("Exponential", "exponential"),
    ("Polyexponential", "polyexponential"), ("SGM Uniform", "sgm_uniform"), ("KL Optimal", "kl_optimal"),
    ("Align Your Steps", "align_your_steps"), ("Simple", "simple"), ("Normal", "normal"), ("DDIM", "ddim"),
    ("Beta", "beta"),
]


class GaussianDenoiser:
    """Exact denoiser for N(MU, SD**2) data; counts calls and exposes an "uncond" estimate."""

    def __init__(self):
        self.calls = 0
        self.last_denoised_uncond = None

    def __call__(self, x, sigma):
        assert sigma.shape == (x.shape[0],)
        self.calls += 1
        s2 = sigma.view(-1, *[1] * (x.ndim - 1)) ** 2
        out = (SD**2 * x + s2 * MU) / (SD**2 + s2)
        self.last_denoised_uncond = out
        return out


def ode_solution(x, sigma_from, sigma_to):
    return MU + (x - MU) * math.sqrt(SD**2 + sigma_to**2) / math.sqrt(SD**2 + sigma_from**2)


def seeded_noise(x, seed):
    generator = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, dtype=x.dtype, generator=generator)


def run(sampler, model, x, sigmas, **overrides):
    return sampler.function(model, x, sigmas, **sampler.call_kwargs(**overrides))


def latent_in_sigma_space(sampler, out, sigmas):
    # The timestep samplers return A1111's variance-preserving latent at their last level.
    last = float(sigmas[-1])
    return out * math.sqrt(1 + last**2) if sampler.kind in ("timesteps", "unipc") else out


# --- deterministic samplers land on the exact ODE solution, with the right order ----------------

DETERMINISTIC = [
    # name, overrides, order, (coarse, fine) step counts
    ("Euler", {}, 1, (12, 24)),
    ("Euler a", {"eta": 0.0}, 1, (12, 24)),
    ("DDIM", {}, 1, (12, 24)),
    ("DDIM CFG++", {}, 1, (12, 24)),
    ("Heun", {}, 2, (12, 24)),
    ("DPM2", {}, 2, (12, 24)),
    ("DPM2 a", {"eta": 0.0}, 2, (12, 24)),
    ("DPM++ 2S a", {"eta": 0.0}, 2, (12, 24)),
    ("DPM++ SDE", {"eta": 0.0}, 2, (12, 24)),
    ("DPM++ 2M", {}, 2, (12, 24)),
    ("DPM++ 2M SDE", {"eta": 0.0}, 2, (12, 24)),
    ("DPM++ 2M SDE Heun", {"eta": 0.0}, 2, (12, 24)),
    ("PLMS", {}, 2, (12, 24)),
    ("Restart", {}, 2, (6, 12)),  # below 20 steps Restart is plain Heun (coarse: 0.05 at 12 steps)
    ("LMS", {}, 3, (12, 24)),
    ("DPM++ 3M SDE", {"eta": 0.0}, 3, (12, 24)),
    ("UniPC", {}, 3, (12, 24)),
    ("DPM fast", {"eta": 0.0}, 3, (12, 24)),
]
MAX_ERROR = {1: 0.12, 2: 0.015, 3: 0.006}
MIN_RATIO = {1: 1.7, 2: 3.2, 3: 5.5}  # about 2**order, with room for pre-asymptotic effects


def log_grid(n, dtype=torch.float64):
    # Ends above 0 so that every sampler integrates the ODE all the way (no final "denoise" jump).
    return torch.exp(torch.linspace(math.log(HI), math.log(0.05), n + 1, dtype=dtype))


@pytest.mark.parametrize("name, overrides, order, counts", DETERMINISTIC, ids=[d[0] for d in DETERMINISTIC])
def test_deterministic_samplers_converge_to_the_ode_solution(name, overrides, order, counts):
    sampler = S.find_sampler(name)
    noise = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    errors = []
    for n in counts:
        sigmas = log_grid(n)
        x = noise * sigmas[0]
        out = latent_in_sigma_space(sampler, run(sampler, GaussianDenoiser(), x, sigmas, **overrides), sigmas)
        errors.append((out - ode_solution(x, float(sigmas[0]), float(sigmas[-1]))).abs().max().item())
    assert errors[1] < (0.07 if name == "Restart" else MAX_ERROR[order])
    # Halving the step size must cut the error by about 2**order.
    assert errors[0] / errors[1] > MIN_RATIO[order]


def test_dpm_adaptive_meets_its_tolerance():
    sampler = S.find_sampler("DPM adaptive")
    x = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * HI
    sigmas = log_grid(10)
    loose = run(sampler, GaussianDenoiser(), x, sigmas, eta=0.0)
    tight, info = sampler.function(GaussianDenoiser(), x, sigmas, eta=0.0, rtol=1e-5, atol=1e-6, return_info=True)
    target = ode_solution(x, float(sigmas[0]), float(sigmas[-1]))
    assert (tight - target).abs().max() < 1e-3 < (loose - target).abs().max()
    assert info["n_accept"] > 5


def test_ddim_with_eta_0_is_an_euler_step_in_sigma():
    sigmas = S.build_sigmas("DDIM", "Automatic", 10, SCHEDULE).double()
    x = torch.randn(2, 16, dtype=torch.float64) * sigmas[0]
    ddim = S.sample_ddim(GaussianDenoiser(), x, sigmas)
    euler = S.sample_euler(GaussianDenoiser(), x, sigmas)
    assert torch.allclose(ddim * math.sqrt(1 + float(sigmas[-1]) ** 2), euler, atol=1e-12)


def test_ddim_matches_the_variance_preserving_formulation():
    """A1111 runs DDIM on z = x / sqrt(1 + sigma**2) from unit noise; ours must give its z."""
    steps = 7
    timesteps = S.a1111_timesteps(steps).tolist()
    abar = SCHEDULE.alphas_cumprod.double()
    noise = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def eps_model(z, t):
        return torch.tanh(z) * 0.3 + t / 2000

    z = noise.clone()
    for index in range(len(timesteps) - 1, 0, -1):
        a, a_prev = abar[timesteps[index]], abar[timesteps[index - 1]]
        eps = eps_model(z, timesteps[index])
        x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    def denoiser(x, sigma):
        s = sigma.view(-1, 1)
        t = float(SCHEDULE.sigma_to_t(sigma[0].float()).round())
        return x - s * eps_model(x / (1 + s**2) ** 0.5, t)

    sigmas = SCHEDULE.sigmas.double()[torch.tensor(timesteps)].flip(0)
    assert torch.equal(S.build_sigmas("DDIM", None, steps, SCHEDULE), SCHEDULE.sigmas[torch.tensor(timesteps)].flip(0))
    ours = S.sample_ddim(denoiser, noise * S.initial_noise_scale("DDIM", sigmas), sigmas)
    assert torch.allclose(ours, z, atol=1e-9)


# --- stochastic samplers produce the right distribution ------------------------------------------

STOCHASTIC = [
    # First-order ancestral steps lose some variance at 40 steps (about 12 %).
    ("Euler a", {}, 0.15),
    ("DDIM", {"eta": 1.0}, 0.15),
    ("DPM2 a", {}, 0.05),
    ("DPM++ 2S a", {}, 0.05),
    ("DPM++ SDE", {}, 0.05),
    ("DPM++ 2M SDE", {}, 0.05),
    ("DPM++ 2M SDE Heun", {}, 0.05),
    ("DPM++ 3M SDE", {}, 0.05),
    ("DPM fast", {}, 0.05),
    ("DPM adaptive", {}, 0.05),
    ("Restart", {}, 0.05),
    ("Heun", {"s_churn": 5.0}, 0.05),
]


@pytest.mark.parametrize("name, overrides, tolerance", STOCHASTIC, ids=[s[0] for s in STOCHASTIC])
def test_stochastic_samplers_sample_the_data_distribution(name, overrides, tolerance):
    sampler = S.find_sampler(name)
    sigmas = S.build_sigmas(sampler, "Automatic", 40, SCHEDULE).double()
    generator = torch.Generator().manual_seed(1)
    unit = torch.randn(4, 4096, dtype=torch.float64, generator=generator)
    start = MU + math.sqrt(SD**2 + float(sigmas[0]) ** 2) * unit
    noise = None if name == "DPM++ SDE" else seeded_noise(start, 2)  # DPM++ SDE: its correlated default
    out = latent_in_sigma_space(sampler, run(sampler, GaussianDenoiser(), start, sigmas, noise_sampler=noise,
                                             **overrides), sigmas)
    target_sd = math.sqrt(SD**2 + float(sigmas[-1]) ** 2)
    assert abs(out.mean().item() - MU) < 0.02
    assert abs(out.std().item() / target_sd - 1) < tolerance


def test_ancestral_noise_converges_with_steps():
    sampler = S.find_sampler("Euler a")
    ratios = []
    for steps in (10, 80):
        sigmas = S.build_sigmas(sampler, "Exponential", steps, SCHEDULE).double()
        start = MU + math.sqrt(SD**2 + HI**2) * torch.randn(4, 4096, dtype=torch.float64,
                                                             generator=torch.Generator().manual_seed(5))
        out = run(sampler, GaussianDenoiser(), start, sigmas, noise_sampler=seeded_noise(start, 6))
        ratios.append(out.std().item() / SD)
    assert ratios[0] < ratios[1] and abs(ratios[1] - 1) < 0.05


# --- every sampler runs with every scheduler ------------------------------------------------------


@pytest.mark.parametrize("sampler_name", A1111_SAMPLER_ORDER)
def test_every_sampler_runs_with_every_scheduler(sampler_name):
    sampler = S.find_sampler(sampler_name)
    for label, _ in A1111_SCHEDULERS:
        for steps in (1, 4):
            sigmas = S.build_sigmas(sampler, label, steps, SCHEDULE)
            x = torch.randn(2, 3, 4, 4) * sigmas[0]
            out = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=seeded_noise(x, 0))
            assert out.shape == x.shape and out.dtype == x.dtype
            assert torch.isfinite(out).all(), (sampler_name, label, steps)


def test_lcm_lands_on_the_estimate_and_renoises():
    sigmas = S.build_sigmas("LCM", "Automatic", 4, SCHEDULE)
    assert sigmas[0].item() == pytest.approx(HI) and sigmas[-1] == 0 and len(sigmas) == 5
    x = torch.randn(2, 8) * sigmas[0]
    out = S.sample_lcm(GaussianDenoiser(), x, sigmas, noise_sampler=lambda a, b: torch.zeros_like(x))
    # Without fresh noise every step is x -> D(x, sigma), so the last output is a denoised estimate.
    expected = x
    for sigma in sigmas[:-1]:
        expected = GaussianDenoiser()(expected, sigma.repeat(2))
    assert torch.allclose(out, expected)


# --- callbacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler_name", A1111_SAMPLER_ORDER)
def test_callback_once_per_step_with_the_documented_keys(sampler_name):
    sampler = S.find_sampler(sampler_name)
    sigmas = S.build_sigmas(sampler, "Automatic", 6, SCHEDULE)
    x = torch.randn(2, 8) * sigmas[0]
    seen = []
    run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=seeded_noise(x, 0), callback=seen.append)
    assert seen and all(set(info) == {"x", "i", "sigma", "sigma_hat", "denoised"} for info in seen)
    assert [info["i"] for info in seen] == list(range(len(seen)))
    assert all(info["denoised"].shape == x.shape for info in seen)
    if sampler_name == "DPM fast":
        assert len(seen) == 3  # 6 model calls as a third-, a second- and a first-order step
    elif sampler_name != "DPM adaptive":
        assert len(seen) == len(sigmas) - 1
        # Restart reports the level it steps to as "sigma" (as A1111 does); the rest the level they start from.
        key = "sigma_hat" if sampler_name == "Restart" else "sigma"
        assert torch.equal(torch.stack([torch.as_tensor(info[key]) for info in seen]), sigmas[:-1])


def test_model_call_counts_match_the_second_order_flag():
    for name in ("Euler", "Heun", "DPM2", "DPM++ 2M", "DPM++ 2S a", "DPM++ SDE", "LMS", "UniPC"):
        sampler = S.find_sampler(name)
        sigmas = S.karras_sigmas(10, LO, HI)
        model = GaussianDenoiser()
        run(sampler, model, torch.randn(1, 4) * sigmas[0], sigmas, noise_sampler=seeded_noise(torch.zeros(1, 4), 0))
        # Second-order samplers take one model call per step, plus one more per step except the
        # last (which steps straight to 0).
        assert model.calls == (19 if sampler.second_order else 10), name


# --- determinism and noise -----------------------------------------------------------------------


@pytest.mark.parametrize("sampler_name", ["Euler a", "DPM++ 2M SDE", "DPM2 a", "LCM", "DDIM"])
def test_seeded_noise_sampler_makes_runs_reproducible(sampler_name):
    sampler = S.find_sampler(sampler_name)
    sigmas = S.build_sigmas(sampler, "Automatic", 8, SCHEDULE)
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    overrides = {"eta": 1.0} if sampler_name == "DDIM" else {}
    first = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=seeded_noise(x, 7), **overrides)
    again = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=seeded_noise(x, 7), **overrides)
    other = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=seeded_noise(x, 8), **overrides)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_brownian_tree_noise_is_per_image_and_unit_variance():
    pytest.importorskip("torchsde")
    x = torch.zeros(3, 4, 16, 16)
    sampler = S.BrownianTreeNoiseSampler(x, 0.03, 14.6, [11, 22, 33])
    alone = S.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, [22])
    sigma, sigma_next = torch.tensor(5.0), torch.tensor(3.0)
    noise = sampler(sigma, sigma_next)
    assert noise.shape == x.shape
    assert torch.allclose(noise[1], alone(sigma, sigma_next)[0])  # independent of the batch around it
    assert torch.equal(noise, S.BrownianTreeNoiseSampler(x, 0.03, 14.6, [11, 22, 33])(sigma, sigma_next))
    assert abs(noise.std().item() - 1) < 0.1
    # Increments over adjacent intervals add up like a Brownian path.
    a, b = sampler(torch.tensor(5.0), torch.tensor(4.0)), sampler(torch.tensor(4.0), torch.tensor(3.0))
    assert torch.allclose(a * 1.0 + b * 1.0, noise * math.sqrt(2.0), atol=1e-5)
    with pytest.raises(ValueError):
        S.BrownianTreeNoiseSampler(x, 0.03, 14.6, [1, 2])


@pytest.mark.filterwarnings("ignore:Should have t")  # torchsde: ulp-level range checks (noise.py)
def test_brownian_noise_gives_the_same_image_at_any_batch_size():
    pytest.importorskip("torchsde")
    sampler = S.find_sampler("DPM++ 2M SDE")
    sigmas = S.build_sigmas(sampler, "Automatic", 6, SCHEDULE)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    low, high = sigmas[sigmas > 0].min(), sigmas.max()
    pair = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=S.BrownianTreeNoiseSampler(x, low, high, [5, 6]))
    single = run(sampler, GaussianDenoiser(), x[1:], sigmas,
                 noise_sampler=S.BrownianTreeNoiseSampler(x[1:], low, high, [6]))
    assert torch.allclose(pair[1:], single, atol=1e-6)


# --- LMS weights ----------------------------------------------------------------------------------


def test_lms_weights_are_adams_bashforth_on_an_even_grid():
    grid = [10.0, 9.0, 8.0, 7.0, 6.0]
    weights = [S.lms_coefficient(4, grid, 3, j) for j in range(4)]
    assert np.allclose(weights, [-55 / 24, 59 / 24, -37 / 24, 9 / 24], atol=1e-6)
    assert S.lms_coefficient(1, grid, 0, 0) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        S.lms_coefficient(3, grid, 1, 0)


# --- schedules ------------------------------------------------------------------------------------


def test_discrete_schedule_maps_timesteps_and_sigmas():
    assert len(SCHEDULE) == 1000
    assert SCHEDULE.alphas_cumprod[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    assert LO == pytest.approx(0.0292, abs=1e-4) and HI == pytest.approx(14.6146, abs=1e-4)
    t = torch.tensor([0.0, 1.0, 250.0, 998.0, 999.0])
    assert torch.allclose(SCHEDULE.t_to_sigma(t), SCHEDULE.sigmas[t.long()], rtol=1e-6, atol=0)
    assert torch.equal(SCHEDULE.sigma_to_t(SCHEDULE.sigmas[t.long()]), t)
    fractional = torch.tensor([0.4, 17.25, 640.8, 998.9])
    assert torch.allclose(SCHEDULE.sigma_to_t(SCHEDULE.t_to_sigma(fractional)), fractional, atol=1e-3)
    assert torch.equal(SCHEDULE.sigma_to_t(SCHEDULE.t_to_sigma(fractional), quantize=True),
                       torch.tensor([0, 17, 641, 999]))
    sigmas = SCHEDULE.get_sigmas(10)
    assert sigmas[0].item() == pytest.approx(HI) and sigmas[-2].item() == pytest.approx(LO) and sigmas[-1] == 0


def test_karras_and_exponential_match_their_closed_forms():
    n, rho = 12, 7.0
    karras = S.karras_sigmas(n, LO, HI).double()
    ramp = np.linspace(0, 1, n)
    closed = (HI ** (1 / rho) + ramp * (LO ** (1 / rho) - HI ** (1 / rho))) ** rho
    assert np.allclose(karras[:-1].numpy(), closed, rtol=1e-5)
    exponential = S.exponential_sigmas(n, LO, HI).double()
    assert np.allclose(exponential[:-1].numpy(), np.geomspace(HI, LO, n), rtol=1e-5)
    assert torch.allclose(S.polyexponential_sigmas(n, LO, HI), S.exponential_sigmas(n, LO, HI))
    kl = S.kl_optimal_sigmas(n, LO, HI).double()
    assert np.allclose(np.arctan(kl.numpy()), np.linspace(math.atan(HI), math.atan(LO), n + 1), atol=1e-6)


@pytest.mark.parametrize("label, api_name", A1111_SCHEDULERS[1:])
@pytest.mark.parametrize("n", [3, 10, 20, 40])
def test_schedules_are_decreasing_and_span_the_model(label, api_name, n):
    sigmas = S.find_scheduler(label).function(n, LO, HI, SCHEDULE)
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    assert (sigmas[1:] < sigmas[:-1]).all() and sigmas[-2] > 0
    if api_name == "kl_optimal":
        assert len(sigmas) == n + 1 and sigmas[-1] == pytest.approx(LO)  # A1111 stops at sigma_min
    elif api_name == "ddim":
        # Table entries 1, 1 + 1000 // n, ...: the top one is not t=999 and there may be more than n.
        timesteps = range(1, 1000, 1000 // n)
        assert len(sigmas) == len(timesteps) + 1 and sigmas[-1] == 0
        assert sigmas[0] == SCHEDULE.sigmas[timesteps[-1]] and sigmas[-2] == SCHEDULE.sigmas[1]
        return
    else:
        assert len(sigmas) == n + 1 and sigmas[-1] == 0
    assert sigmas[0] == pytest.approx(HI, rel=1e-3)
    assert sigmas[-2] < 1.0


def test_align_your_steps_uses_nvidias_constants():
    assert S.align_your_steps_sigmas(11).tolist()[:-1] == pytest.approx(list(schedules.AYS_SD1))
    assert S.align_your_steps_sigmas(11, is_sdxl=True).tolist()[:-1] == pytest.approx(list(schedules.AYS_SDXL))
    stretched = S.align_your_steps_sigmas(21)
    # Interpolated in log sigma: every other level is one of the constants.
    assert stretched[:-1][::2].tolist() == pytest.approx(list(schedules.AYS_SD1), rel=1e-6)
    assert math.log(stretched[1]) == pytest.approx((math.log(14.615) + math.log(6.475)) / 2, rel=1e-6)


def test_beta_schedule_quantiles():
    linear = S.beta_sigmas(11, LO, HI, alpha=1.0, beta=1.0).double()
    assert np.allclose(linear[:-1].numpy(), np.linspace(HI, LO, 11), rtol=1e-6)
    p = np.array([0.0, 0.001, 0.3, 0.5, 0.7, 0.999, 1.0])
    q = schedules.beta_ppf(p, 0.6, 0.6)
    assert q[3] == pytest.approx(0.5, abs=1e-12) and q[0] == 0 and q[-1] == 1
    assert np.allclose(schedules.beta_cdf(q, 0.6, 0.6), p, atol=1e-12)
    assert np.allclose(q + q[::-1], 1.0, atol=1e-12)  # symmetric for alpha == beta


def test_beta_ppf_agrees_with_scipy_when_available():
    special = pytest.importorskip("scipy.special")  # A1111 uses scipy.stats.beta.ppf, the same function
    p = np.linspace(0, 1, 37)
    for a, b in ((0.6, 0.6), (2.0, 0.4), (0.3, 5.0)):
        assert np.allclose(schedules.beta_ppf(p, a, b), special.betaincinv(a, b, p), atol=1e-12, rtol=1e-10)


def test_timestep_sampler_schedules_follow_a1111():
    assert S.a1111_timesteps(20).tolist() == list(range(1, 1000, 50))
    assert S.a1111_timesteps(30).tolist() == [min(t + 1, 999) for t in range(0, 1000, 33)]
    assert S.a1111_timesteps(1).tolist() == [1, 999]
    ddim = S.build_sigmas("PLMS", "Karras", 20, SCHEDULE)  # the timestep samplers ignore the scheduler
    assert torch.equal(ddim, SCHEDULE.sigmas[torch.arange(951, 0, -50)])
    unipc = S.build_sigmas("UniPC", "Automatic", 20, SCHEDULE)
    assert len(unipc) == 21 and unipc[0] == pytest.approx(HI, rel=1e-4) and unipc[-1] == pytest.approx(LO, rel=1e-4)
    assert torch.allclose(SCHEDULE.sigma_to_t(unipc), torch.linspace(999, 0, 21), atol=2e-3)


def test_lcm_schedule_uses_every_twentieth_timestep():
    lcm = S.LCMSchedule(SCHEDULE.alphas_cumprod)
    assert len(lcm) == 50
    assert torch.equal(lcm.sigmas, SCHEDULE.sigmas[19::20])
    assert lcm.sigma_to_t(torch.tensor([HI, LO])).tolist() == [999, 19]
    assert lcm.sigma_min == pytest.approx(float(SCHEDULE.sigmas[19]))
    assert set(lcm.sigma_to_t(torch.rand(100) * 14 + 0.1).tolist()) <= set(range(19, 1000, 20))
    c_skip, c_out = lcm.boundary_scalings(torch.tensor([HI]))
    assert c_skip.item() < 1e-6 and c_out.item() == pytest.approx(1.0, abs=1e-6)


# --- build_sigmas: A1111's rules -----------------------------------------------------------------


def test_automatic_resolves_to_the_samplers_default_schedule():
    assert torch.equal(S.build_sigmas("DPM++ 2M", "Automatic", 20, SCHEDULE), S.karras_sigmas(20, LO, HI))
    assert torch.equal(S.build_sigmas("DPM++ 2M", None, 20, SCHEDULE), S.karras_sigmas(20, LO, HI))
    assert torch.equal(S.build_sigmas("Euler", "Automatic", 20, SCHEDULE), SCHEDULE.get_sigmas(20))
    assert torch.equal(S.build_sigmas("Euler", "karras", 20, SCHEDULE), S.karras_sigmas(20, LO, HI))
    assert torch.equal(S.build_sigmas("DPM++ 2M SDE", "Automatic", 20, SCHEDULE), S.exponential_sigmas(20, LO, HI))


def test_discard_penultimate_sigma():
    dpm2 = S.build_sigmas("DPM2", "Automatic", 20, SCHEDULE)
    full = S.karras_sigmas(21, LO, HI)
    assert len(dpm2) == 21 and torch.equal(dpm2, torch.cat([full[:-2], full[-1:]]))
    three_m = S.build_sigmas("DPM++ 3M SDE", "Automatic", 10, SCHEDULE)
    full = S.exponential_sigmas(11, LO, HI)
    assert torch.equal(three_m, torch.cat([full[:-2], full[-1:]]))
    euler = S.build_sigmas("Euler", "Karras", 10, SCHEDULE, always_discard_penultimate=True)
    assert len(euler) == 11 and euler[-2] > S.karras_sigmas(10, LO, HI)[-2]
    assert len(S.build_sigmas("DPM2", "Automatic", 1, SCHEDULE)) == 2


def test_overrides_and_devices():
    custom = S.build_sigmas("Euler", "Karras", 8, SCHEDULE, sigma_min=0.1, sigma_max=10.0, rho=5.0)
    assert torch.equal(custom, S.karras_sigmas(8, 0.1, 10.0, 5.0))
    # rho only applies to the schedules that have one; the model's own ignores min/max.
    assert torch.equal(S.build_sigmas("Euler", "Exponential", 8, SCHEDULE, rho=5.0), S.exponential_sigmas(8, LO, HI))
    assert torch.equal(S.build_sigmas("Euler", "Uniform", 8, SCHEDULE, sigma_min=0.1), SCHEDULE.get_sigmas(8))
    sdxl = S.build_sigmas("Euler", "Align Your Steps", 10, SCHEDULE, is_sdxl=True)
    assert sdxl[1] != S.build_sigmas("Euler", "Align Your Steps", 10, SCHEDULE)[1]
    assert S.build_sigmas("Euler", "Beta", 8, SCHEDULE, device="cpu").device.type == "cpu"
    with pytest.raises(ValueError):
        S.build_sigmas("Euler", "Karras", 0, SCHEDULE)
    with pytest.raises(ValueError, match="Karras"):
        S.build_sigmas("Euler", "Fancy", 10, SCHEDULE)


def test_initial_noise_scale():
    sigmas = S.build_sigmas("DDIM", None, 20, SCHEDULE)
    assert S.initial_noise_scale("DDIM", sigmas) == pytest.approx(math.sqrt(1 + float(sigmas[0]) ** 2))
    karras = S.build_sigmas("Euler a", "Karras", 20, SCHEDULE)
    assert S.initial_noise_scale("Euler a", karras) == karras[0]


# --- the registry ---------------------------------------------------------------------------------


def test_samplers_in_a1111_ui_order_with_their_flags():
    assert S.sampler_names() == A1111_SAMPLER_ORDER
    by = {s.name: s for s in S.SAMPLERS}
    assert {n for n, s in by.items() if s.second_order} == {
        "DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    assert {n for n, s in by.items() if s.brownian_noise} == {
        "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}
    assert {n for n, s in by.items() if s.uses_ensd} == {
        "DPM++ 2S a", "Euler a", "DPM2 a", "DPM fast", "DPM adaptive"}
    assert {n for n, s in by.items() if s.discard_penultimate_sigma} == {"DPM++ 3M SDE", "DPM2", "DPM2 a"}
    assert {n: s.default_scheduler for n, s in by.items() if s.default_scheduler} == {
        "DPM++ 2M": "Karras", "DPM++ SDE": "Karras", "DPM++ 2M SDE": "Exponential",
        "DPM++ 2M SDE Heun": "Exponential", "DPM++ 2S a": "Karras", "DPM++ 3M SDE": "Exponential",
        "DPM2": "Karras", "DPM2 a": "Karras", "Restart": "Karras"}
    assert dict(by["DPM++ 2M SDE Heun"].options) == {"solver_type": "heun"}
    assert not by["UniPC"].exact and by["DPM++ 2M"].exact
    assert by["DDIM CFG++"].needs_uncond and by["DDIM CFG++"].cfg_scale_multiplier == pytest.approx(0.08)


def test_find_sampler_by_label_or_alias():
    assert S.find_sampler("k_dpmpp_2m").name == "DPM++ 2M"
    assert S.find_sampler("dpm++ 2m").name == "DPM++ 2M"
    assert S.find_sampler("K_EULER_ANCESTRAL").name == "Euler a"
    assert S.find_sampler("k_euler_a").name == "Euler a"
    assert S.find_sampler("Euler").name == "Euler"
    assert S.find_sampler("ddim_cfgpp").name == "DDIM CFG++"
    for sampler in S.SAMPLERS:
        assert S.find_sampler(sampler.name) is sampler
        assert all(S.find_sampler(alias) is sampler for alias in sampler.aliases)
    with pytest.raises(ValueError) as error:
        S.find_sampler("Euler b")
    assert "DPM++ 2M" in str(error.value) and "UniPC" in str(error.value)


def test_find_scheduler_by_label_or_api_name():
    for label, api_name in A1111_SCHEDULERS:
        assert S.find_scheduler(label).label == label
        assert S.find_scheduler(api_name).label == label
    assert S.scheduler_labels() == [label for label, _ in A1111_SCHEDULERS]
    assert S.find_scheduler("SGMUniform").label == "SGM Uniform"
    assert S.find_scheduler("KARRAS").label == "Karras"
    with pytest.raises(ValueError, match="Align Your Steps"):
        S.find_scheduler("cosine")


def test_split_sampler_name_like_the_a1111_api():
    assert S.split_sampler_name("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert S.split_sampler_name("DPM++ 2M Karras", convert_automatic=True) == ("DPM++ 2M", None)
    assert S.split_sampler_name("Euler a") == ("Euler a", None)
    assert S.split_sampler_name("DDIM") == ("DDIM", None)
    assert S.split_sampler_name("DPM++ 2M SDE Heun Exponential") == ("DPM++ 2M SDE Heun", "Exponential")
    assert S.split_sampler_name("dpm++ sde karras") == ("DPM++ SDE", "Karras")
    assert S.split_sampler_name("Euler SGMUniform") == ("Euler", "SGM Uniform")
    assert S.split_sampler_name("k_lms karras") == ("LMS", "Karras")
    assert S.split_sampler_name("DPM2 a Align Your Steps") == ("DPM2 a", "Align Your Steps")
    with pytest.raises(ValueError, match="DPM\\+\\+ 2M"):
        S.split_sampler_name("Nope Karras")


def test_call_kwargs_follow_a1111():
    assert S.find_sampler("DPM++ 2M SDE Heun").call_kwargs() == {"solver_type": "heun", "eta": 1.0}
    assert S.find_sampler("DPM fast").call_kwargs() == {"eta": 1.0}
    assert S.find_sampler("DDIM").call_kwargs(eta=0.5) == {"eta": 0.5}
    assert S.find_sampler("Euler a").call_kwargs(s_churn=1.0, s_noise=0.9) == {"eta": 1.0, "s_noise": 0.9}
    assert S.find_sampler("Euler").call_kwargs(s_churn=1.0, eta=None) == {"s_churn": 1.0}
    assert S.find_sampler("UniPC").call_kwargs() == {"order": 3, "variant": "bh1", "lower_order_final": True}


def test_ddim_cfgpp_requires_the_unconditional_estimate():
    sigmas = S.build_sigmas("DDIM CFG++", None, 5, SCHEDULE)

    def plain(x, sigma):
        return x * 0.5

    with pytest.raises(RuntimeError, match="last_denoised_uncond"):
        S.sample_ddim_cfgpp(plain, torch.randn(1, 4), sigmas)


def test_registry_module_exports():
    assert registry.SAMPLERS is S.SAMPLERS and len(S.SCHEDULERS) == 12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("sampler_name", A1111_SAMPLER_ORDER)
def test_samplers_run_on_cuda_like_on_cpu(sampler_name):
    sampler = S.find_sampler(sampler_name)
    sigmas = S.build_sigmas(sampler, "Automatic", 8, SCHEDULE)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    noise = torch.randn(64, *x.shape, generator=torch.Generator().manual_seed(1))

    def replay(device):
        draws = iter(noise.to(device))
        return lambda sigma, sigma_next: next(draws)

    on_cpu = run(sampler, GaussianDenoiser(), x, sigmas, noise_sampler=replay("cpu"))
    on_gpu = run(sampler, GaussianDenoiser(), x.cuda(), sigmas.cuda(), noise_sampler=replay("cuda"))
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)
