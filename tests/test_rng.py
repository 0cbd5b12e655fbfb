"""Seeds and noise: the numbers A1111 makes for a seed, batches, variations, seed resize."""

import pytest
import torch

from webui.generation.rng import (
    ImageRNG,
    PhiloxGenerator,
    SEED_RANGE,
    fix_seed,
    job_seeds,
    randn,
    slerp,
)

SHAPE = (4, 8, 8)

# torch's CPU normals for seed 1234 (torch.manual_seed(1234); torch.randn(...)): a
# well-known sequence, the first noise values of any A1111 image made with the CPU source.
TORCH_CPU_1234 = [-0.1117185652256012, -0.49659010767936707, 0.16307370364665985, -0.8816877603530884]

# torch.randn((3, 4)) on a CUDA device after manual_seed(0), as printed on a GPU; the
# "NV" source must reproduce it on the CPU.
TORCH_CUDA_0 = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]


@pytest.mark.parametrize("source", ["CPU", "GPU"])
def test_known_values_of_seed_1234(source):
    noise = randn(1234, SHAPE, source)
    assert noise.dtype == torch.float32 and noise.shape == SHAPE
    assert noise.flatten()[:4].tolist() == pytest.approx(TORCH_CPU_1234, abs=0)
    first = ImageRNG(SHAPE, [1234], source=source).first()
    assert torch.equal(first[0], noise)


def test_nv_source_imitates_cuda():
    expected = torch.tensor(TORCH_CUDA_0)
    assert torch.allclose(torch.from_numpy(PhiloxGenerator(0).randn((3, 4))), expected, rtol=0, atol=1e-6)
    assert torch.allclose(randn(0, (3, 4), "NV"), expected, rtol=0, atol=1e-6)


def test_nv_calls_move_along_the_stream():
    generator = PhiloxGenerator(42)
    first, second = generator.randn((2, 3)), generator.randn((2, 3))
    assert (first != second).all()
    assert (PhiloxGenerator(42).randn((2, 3)) == first).all()
    # Large seeds use the high key word too.
    assert (PhiloxGenerator(42 + 2**32).randn((2, 3)) != first).all()


@pytest.mark.parametrize("source", ["CPU", "GPU", "NV"])
def test_same_seed_same_noise_other_seed_other_noise(source):
    assert torch.equal(randn(7, SHAPE, source), randn(7, SHAPE, source))
    assert not torch.allclose(randn(7, SHAPE, source), randn(8, SHAPE, source))


def test_unknown_source_is_refused():
    with pytest.raises(ValueError):
        randn(1, SHAPE, "TPU")


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_batch_image_equals_single_image_of_its_seed(source):
    batch = ImageRNG(SHAPE, [100, 101], source=source).first()
    assert batch.shape == (2, *SHAPE)
    assert torch.equal(batch[1], ImageRNG(SHAPE, [101], source=source).first()[0])
    assert torch.equal(batch[1], randn(101, SHAPE, source))
    assert not torch.allclose(batch[0], batch[1])


def test_job_seeds_count_up_unless_there_is_a_variation():
    assert job_seeds(10, 50, 0.0, 3) == ([10, 11, 12], [50, 51, 52])
    assert job_seeds(10, 50, 0.3, 3) == ([10, 10, 10], [50, 51, 52])


def test_fix_seed():
    for random_request in (-1, None, "", "-1", "not a number"):
        seed = fix_seed(random_request)
        assert isinstance(seed, int) and 0 <= seed < SEED_RANGE
    assert fix_seed(1234) == 1234
    assert fix_seed("1234") == 1234
    assert fix_seed(0) == 0
    assert len({fix_seed(-1) for _ in range(20)}) > 1


def test_subseed_strength_zero_one_and_between():
    seed_noise = randn(1, SHAPE, "CPU")
    sub_noise = randn(2, SHAPE, "CPU")

    def first(strength):
        return ImageRNG(SHAPE, [1], [2], strength, source="CPU").first()[0]

    assert torch.equal(first(0.0), seed_noise)
    assert torch.allclose(first(1.0), sub_noise, atol=1e-5)
    half = first(0.5)
    assert not torch.allclose(half, seed_noise, atol=0.1) and not torch.allclose(half, sub_noise, atol=0.1)
    # A slerp keeps the noise's scale where a plain average would shrink it to about 0.71.
    assert 0.85 < half.std().item() < 1.15
    # Along dim 1 (the slerp's vector direction) the norm stays close to the ends' norms.
    ratio = half.norm(dim=1) / seed_noise.norm(dim=1)
    assert 0.7 < ratio.mean().item() < 1.3


def test_subseeds_beyond_the_list_use_zero_and_none_means_no_variation():
    rng = ImageRNG(SHAPE, [1, 2], [5], 1.0, source="CPU").first()
    assert torch.allclose(rng[1], randn(0, SHAPE, "CPU"), atol=1e-5)
    plain = ImageRNG(SHAPE, [1], None, 0.7, source="CPU").first()[0]
    assert torch.equal(plain, randn(1, SHAPE, "CPU"))


def test_slerp_falls_back_to_lerp_for_parallel_noise():
    low = randn(3, SHAPE, "CPU")
    # A1111's fallback weighs the first argument by val (kept for identical output).
    assert torch.allclose(slerp(0.25, low, 2 * low), low * 0.25 + 2 * low * 0.75)


def test_seed_resize_keeps_the_centre_of_the_noise():
    # Noise made "as if" 64x64 px (8x8 latent), placed in the middle of a 128x96 px image.
    target = (4, 12, 16)
    resized = ImageRNG(target, [9], seed_resize_from_h=64, seed_resize_from_w=64, source="CPU").first()[0]
    original = randn(9, SHAPE, "CPU")
    assert torch.equal(resized[:, 2:10, 4:12], original)
    # Outside the pasted block: the seed's own noise at the target size.
    own = randn(9, target, "CPU")
    assert torch.equal(resized[:, :2, :], own[:, :2, :])
    assert torch.equal(resized[:, :, :4], own[:, :, :4])


def test_seed_resize_to_a_smaller_size_crops_the_centre():
    # Generated as if 128x128 px (16x16 latent); the 8x8 target gets the middle of it.
    small = ImageRNG(SHAPE, [9], seed_resize_from_h=128, seed_resize_from_w=128, source="CPU").first()[0]
    big = randn(9, (4, 16, 16), "CPU")
    assert torch.equal(small, big[:, 4:12, 4:12])


def test_seed_resize_is_off_unless_both_sides_are_set():
    plain = randn(9, SHAPE, "CPU")
    assert torch.equal(ImageRNG(SHAPE, [9], seed_resize_from_h=64, seed_resize_from_w=0, source="CPU").first()[0], plain)
    assert torch.equal(ImageRNG(SHAPE, [9], seed_resize_from_h=-1, seed_resize_from_w=-1, source="CPU").first()[0], plain)


def test_seed_resize_with_variation_blends_at_the_old_size():
    target = (4, 12, 12)
    noise = ImageRNG(target, [9], [4], 0.5, 64, 64, source="CPU").first()[0]
    expected = slerp(0.5, randn(9, SHAPE, "CPU"), randn(4, SHAPE, "CPU"))
    assert torch.allclose(noise[:, 2:10, 2:10], expected)


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_next_continues_each_images_generator(source):
    def sequence():
        rng = ImageRNG(SHAPE, [20, 21], source=source)
        return [rng.first(), rng.next(), rng.next()]

    one, two = sequence(), sequence()
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert not torch.allclose(one[1], one[2])
    # Image 1's step noise is the second draw of its own generator, not affected by image 0.
    single = ImageRNG(SHAPE, [21], source=source)
    single.first()
    assert torch.equal(one[1][1], single.next()[0])


def test_next_before_first_is_the_first_noise():
    rng = ImageRNG(SHAPE, [5], source="CPU")
    assert torch.equal(rng.next(), ImageRNG(SHAPE, [5], source="CPU").first())
    assert not torch.equal(rng.next(), ImageRNG(SHAPE, [5], source="CPU").first())


def test_eta_noise_seed_delta_reseeds_the_step_noise():
    rng = ImageRNG(SHAPE, [5], source="CPU", eta_noise_seed_delta=31337)
    plain = ImageRNG(SHAPE, [5], source="CPU")
    assert torch.equal(rng.first(), plain.first())  # the initial noise is unchanged
    step = rng.next()[0]
    assert torch.equal(step, randn(5 + 31337, SHAPE, "CPU"))
    assert not torch.equal(step, plain.next()[0])


def test_noise_sampler_adapter():
    rng = ImageRNG(SHAPE, [5, 6], source="CPU")
    reference = ImageRNG(SHAPE, [5, 6], source="CPU")
    rng.first(), reference.first()
    sampler = rng.noise_sampler
    assert torch.equal(sampler(torch.tensor(1.0), torch.tensor(0.5)), reference.next())
    assert sampler(None, None).shape == (2, *SHAPE)


def test_global_torch_rng_is_left_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ImageRNG(SHAPE, [1, 2], [3, 4], 0.5, 96, 96, source="CPU", eta_noise_seed_delta=7).first()
    assert torch.equal(torch.rand(3), expected)
