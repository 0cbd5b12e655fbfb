"""Seeds and noise, reproducing A1111's numbers: the same seed gives the same latent noise.

A1111 draws each image's noise from its own generator seeded with that image's seed, so an
image does not depend on its neighbours in the batch. Variation seeds (subseeds) are blended
in with a spherical interpolation, and "seed resize" makes the noise as if the image had been
generated at another size, so a composition survives a change of resolution.

Noise sources, as A1111's "Random number generator source" setting:
- "GPU": a torch generator on the target device (CPU on a CPU-only machine, and on MPS,
  where A1111 also falls back to the CPU);
- "CPU": a CPU torch generator, the result moved to the device (same numbers everywhere);
- "NV": a NumPy Philox generator imitating torch's CUDA randn, so a machine without an
  NVIDIA GPU reproduces images made on one.

Unlike A1111 nothing here touches torch's global RNG: every draw uses a local generator
(a freshly seeded one gives the same numbers as the global one after `manual_seed`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

SOURCES = ("GPU", "CPU", "NV")
LATENT_FACTOR = 8  # pixels per latent cell; A1111 hard-codes it for the seed resize
SEED_RANGE = 4294967294  # A1111 draws random seeds from range(2**32 - 2)


def fix_seed(seed: object) -> int:
    """A concrete seed: -1, None, "" or text that is not a number become a random one."""
    if seed is None or seed == "":
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            seed = -1
    seed = int(seed)  # type: ignore[arg-type]
    if seed == -1:
        return random.randrange(SEED_RANGE)
    return seed


def job_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Per-image seeds and subseeds of a job, as A1111 assigns them.

    Image i gets seed+i, except with a variation strength, where every image keeps the
    seed and only the variation seed counts up (so the images are variations of one).
    """
    seeds = [seed + (i if subseed_strength == 0 else 0) for i in range(count)]
    subseeds = [subseed + i for i in range(count)]
    return seeds, subseeds


class PhiloxGenerator:
    """A CPU imitation of torch's CUDA normal generator (Philox 4x32-10 + Box-Muller).

    Like A1111's, every `randn` call is one "offset" further along, whatever its size.
    """

    _MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
    _KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
    # The constants are float32 values, as on the GPU; the arithmetic is float64, as in A1111.
    _TO_UNIT = float(np.float32(2.3283064e-10))  # about 2**-32
    _TO_ANGLE = float(np.float32(2.3283064e-10 * 6.2831855))  # about 2*pi / 2**32

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        index = np.arange(count, dtype=np.uint64)
        counter = [
            np.full(count, self.offset, dtype=np.uint64),
            np.zeros(count, dtype=np.uint64),
            index & 0xFFFFFFFF,
            index >> 32,
        ]
        self.offset += 1
        key = [self.seed & 0xFFFFFFFF, (self.seed >> 32) & 0xFFFFFFFF]
        bits = self._philox(counter, key)
        return self._box_muller(bits[0], bits[1]).reshape(tuple(shape))

    @classmethod
    def _philox(cls, c: list[np.ndarray], key: list[int], rounds: int = 10) -> list[np.ndarray]:
        """Ten rounds of Philox 4x32 on uint64 arrays that hold 32-bit words."""
        mask = np.uint64(0xFFFFFFFF)
        k0, k1 = key
        for round_number in range(rounds):
            product0 = c[0] * np.uint64(cls._MULTIPLIERS[0])
            product1 = c[2] * np.uint64(cls._MULTIPLIERS[1])
            c = [
                (product1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0),
                product1 & mask,
                (product0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
                product0 & mask,
            ]
            if round_number < rounds - 1:  # the key is bumped between rounds
                k0 = (k0 + cls._KEY_STEPS[0]) & 0xFFFFFFFF
                k1 = (k1 + cls._KEY_STEPS[1]) & 0xFFFFFFFF
        return c

    @classmethod
    def _box_muller(cls, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The first of the two normals Box-Muller makes from two uniform words."""
        u = x.astype(np.float64) * cls._TO_UNIT + cls._TO_UNIT / 2
        v = y.astype(np.float64) * cls._TO_ANGLE + cls._TO_ANGLE / 2
        return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


Generator = torch.Generator | PhiloxGenerator


def _generator_device(source: str, device: torch.device) -> torch.device:
    if source == "CPU" or device.type == "mps":
        return torch.device("cpu")
    return device


def create_generator(seed: int, source: str = "GPU", device: torch.device | str = "cpu") -> Generator:
    """A fresh generator for `seed` on the device the source draws on."""
    if source not in SOURCES:
        raise ValueError(f"unknown noise source {source!r}; expected one of {SOURCES}")
    if source == "NV":
        return PhiloxGenerator(seed)
    return torch.Generator(_generator_device(source, torch.device(device))).manual_seed(int(seed))


def draw(generator: Generator, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The next `shape` normals from `generator`, as float32 on `device`."""
    device = torch.device(device)
    if isinstance(generator, PhiloxGenerator):
        return torch.from_numpy(generator.randn(shape)).to(device)
    noise = torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device)


def randn(seed: int, shape: Sequence[int], source: str = "GPU", device: torch.device | str = "cpu") -> torch.Tensor:
    """The first noise tensor of `seed`: what A1111 gives for one image of that seed."""
    return draw(create_generator(seed, source, device), shape, device)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's spherical interpolation of one image's noise [C, H, W] towards `high`.

    As in A1111 the angle is taken per (channel, column): the vectors run along dim 1.
    When the two are almost parallel it falls back to a linear blend, which in A1111
    weighs `low` by `val` (the reverse of the slerp's weights); kept for identical output.
    """
    low_unit = low / torch.norm(low, dim=1, keepdim=True)
    high_unit = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_unit * high_unit).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    low_weight = (torch.sin((1.0 - val) * omega) / sin_omega).unsqueeze(1)
    high_weight = (torch.sin(val * omega) / sin_omega).unsqueeze(1)
    return low_weight * low + high_weight * high


def _paste_centred(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Put `source` [C, h, w] in the middle of `target` [C, H, W], cropping what overhangs."""
    dx = (target.shape[2] - source.shape[2]) // 2
    dy = (target.shape[1] - source.shape[1]) // 2
    width = source.shape[2] if dx >= 0 else source.shape[2] + 2 * dx
    height = source.shape[1] if dy >= 0 else source.shape[1] + 2 * dy
    to_x, to_y = max(dx, 0), max(dy, 0)
    from_x, from_y = max(-dx, 0), max(-dy, 0)
    target[:, to_y:to_y + height, to_x:to_x + width] = source[:, from_y:from_y + height, from_x:from_x + width]
    return target


class ImageRNG:
    """The noise of one batch: each image has its own generator, seeded with its seed.

    `first()` is the initial latent noise [B, C, H, W]; `next()` the noise ancestral and SDE
    samplers add at each step, drawn from each image's generator after the first noise
    (or from seed + eta_noise_seed_delta when that is set). As in A1111, a `next()` before
    any `first()` returns the first noise.
    """

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: str = "GPU",
        device: torch.device | str = "cpu",
        eta_noise_seed_delta: int = 0,
        latent_factor: int = LATENT_FACTOR,
    ):
        self.shape = tuple(int(s) for s in shape)  # (C, H, W) of the latent
        self.seeds = [int(s) for s in seeds]
        self.subseeds = [int(s) for s in subseeds] if subseeds is not None else None
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = source
        self.device = torch.device(device)
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.latent_factor = latent_factor
        self.generators = [create_generator(seed, source, self.device) for seed in self.seeds]
        self.started = False

    def _noise_shape(self) -> tuple[int, ...]:
        """The shape the seed's noise is made at: the resize-from size when that is on."""
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (
            self.shape[0],
            self.seed_resize_from_h // self.latent_factor,
            self.seed_resize_from_w // self.latent_factor,
        )

    def _fresh(self, seed: int, shape: Sequence[int]) -> torch.Tensor:
        return randn(seed, shape, self.source, self.device)

    def first(self) -> torch.Tensor:
        self.started = True
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        images = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                # A1111 uses subseed 0 for images its subseed list does not reach.
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = self._fresh(subseed, noise_shape)
            # The image's own generator only ever draws at the target size, so that
            # next() continues the same stream with or without a seed resize.
            noise = self._fresh(seed, noise_shape) if resized else draw(generator, self.shape, self.device)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = _paste_centred(noise, draw(generator, self.shape, self.device))
            images.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [
                create_generator(seed + self.eta_noise_seed_delta, self.source, self.device) for seed in self.seeds
            ]
        return torch.stack(images).to(self.device)

    def next(self) -> torch.Tensor:
        if not self.started:
            return self.first()
        return torch.stack([draw(g, self.shape, self.device) for g in self.generators]).to(self.device)

    def noise_sampler(self, sigma: object = None, sigma_next: object = None) -> torch.Tensor:
        """k-diffusion's `noise_sampler(sigma, sigma_next)`: the batch's next noise."""
        return self.next()
