"""The CFG denoiser: schedule swaps at A1111's steps, AND weights, cond/uncond batching."""

import pytest
import torch

from tiny_models import make_tiny_model
from webui.generation.conditioning import PromptEncoder
from webui.generation.denoiser import CFGDenoiser, Interrupted, JobControl, ModelDenoiser, Skipped
from webui.generation.prompt_conditioning import encode_prompts


IDENTITY_SCHEDULE = type("Schedule", (), {"sigma_to_t": staticmethod(lambda s: s)})()


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("sd1")


@pytest.fixture(scope="module")
def encoder(model):
    return PromptEncoder(model)


class RecordingDenoiser:
    """Stands in for the UNet: returns each row's first crossattn value, records calls."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def __call__(self, x, sigma, crossattn, added=None, image_cond=None):
        self.calls.append(crossattn.clone())
        return crossattn[:, 0, 0].view(-1, 1, 1, 1).expand_as(x).clone()


def test_unet_sees_text_b_from_the_step_the_schedule_says(model, encoder):
    steps = 6
    conds = encode_prompts(encoder, ["a [cat:dog:3]"], steps)
    unconds = encode_prompts(encoder, [""], steps, negative=True)
    cat = encoder.encode_group(["a cat", "a dog"])[0].crossattn  # the same group A1111 encodes
    dog = encoder.encode_group(["a cat", "a dog"])[1].crossattn
    seen = []
    model.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["encoder_hidden_states"][0].clone()), with_kwargs=True)
    denoiser = CFGDenoiser(ModelDenoiser(model, type('Schedule', (), {'sigma_to_t': staticmethod(lambda s: s * 10)})()), conds, unconds, 7.0)
    x = torch.randn(1, 4, 8, 8)
    for _ in range(steps):
        denoiser(x, torch.tensor([1.0]))
    # Calls count from 0 and take the first entry with end step >= call: 0..3 cat, 4..5 dog.
    for call, hidden in enumerate(seen):
        expected = cat if call <= 3 else dog
        torch.testing.assert_close(hidden, expected, msg=f"call {call}")


def test_and_parts_combine_as_weighted_guidance(model, encoder):
    conds = encode_prompts(encoder, ["a cat :1.5 AND a dog :-0.5"], 4)
    unconds = encode_prompts(encoder, ["blurry"], 4, negative=True)
    fake = RecordingDenoiser(model)
    denoiser = CFGDenoiser(fake, conds, unconds, 5.0)
    out = denoiser(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    (batch,) = fake.calls  # equal lengths: one batched call, conds first then the uncond
    cat, dog, uncond = (batch[i, 0, 0] for i in range(3))
    expected = uncond + 1.5 * 5.0 * (cat - uncond) - 0.5 * 5.0 * (dog - uncond)
    torch.testing.assert_close(out, expected.expand(1, 4, 2, 2))


def test_different_chunk_counts_run_separately(model, encoder):
    conds = encode_prompts(encoder, ["a BREAK b"], 4)
    unconds = encode_prompts(encoder, [""], 4, negative=True)
    fake = RecordingDenoiser(model)
    CFGDenoiser(fake, conds, unconds, 7.0)(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert [c.shape[1] for c in fake.calls] == [154, 77]


def test_batch_images_keep_their_own_prompts(model, encoder):
    conds = encode_prompts(encoder, ["a cat", "a dog"], 4)
    unconds = encode_prompts(encoder, ["", ""], 4, negative=True)
    fake = RecordingDenoiser(model)
    out = CFGDenoiser(fake, conds, unconds, 3.0)(torch.zeros(2, 4, 2, 2), torch.tensor([1.0, 1.0]))
    (batch,) = fake.calls
    for i in range(2):
        expected = batch[2 + i, 0, 0] + 3.0 * (batch[i, 0, 0] - batch[2 + i, 0, 0])
        torch.testing.assert_close(out[i], expected.expand(4, 2, 2))


def test_cfg_one_skips_the_uncond_pass(model, encoder):
    conds = encode_prompts(encoder, ["a cat"], 4)
    unconds = encode_prompts(encoder, ["ugly"], 4, negative=True)
    fake = RecordingDenoiser(model)
    CFGDenoiser(fake, conds, unconds, 1.0)(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert fake.calls[0].shape[0] == 1


def test_interrupt_and_skip(model, encoder):
    conds = encode_prompts(encoder, ["a"], 4)
    unconds = encode_prompts(encoder, [""], 4, negative=True)
    control = JobControl()
    denoiser = CFGDenoiser(RecordingDenoiser(model), conds, unconds, 7.0, control=control)
    control.skipped = True
    with pytest.raises(Skipped):
        denoiser(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert not control.skipped  # a skip ends one batch only
    control.interrupted = True
    with pytest.raises(Interrupted):
        denoiser(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))


def test_v_prediction_and_eps_parametrisations():
    eps_model = make_tiny_model("sd1")
    v_model = make_tiny_model("sd2", v_prediction=True)
    for m in (eps_model, v_model):
        m.unet.forward = lambda sample, t, **kw: type("Out", (), {"sample": torch.ones_like(sample)})()
    x, sigma = torch.full((1, 4, 2, 2), 2.0), torch.tensor([3.0])
    crossattn = torch.zeros(1, 77, 32)
    eps = ModelDenoiser(eps_model, IDENTITY_SCHEDULE)(x, sigma, crossattn)
    torch.testing.assert_close(eps, x - 3.0)  # x - eps * sigma
    v = ModelDenoiser(v_model, IDENTITY_SCHEDULE)(x, sigma, crossattn)
    torch.testing.assert_close(v, x / 10 - 3.0 / 10**0.5)  # x c_skip + v c_out
