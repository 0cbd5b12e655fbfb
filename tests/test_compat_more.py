"""More A1111 `modules.*` names extensions import: the UI entry points (txt2img/img2img), CondFunc, the
CLIP chunking classes, lowvram, the optimisation base class and textual inversion. Each test writes a
small extension of ours that imports and uses them, loaded as the loader does."""

from __future__ import annotations

import types

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from script_helpers import load_extension, make_state, write_extension
from tiny_models import make_tiny_model
from webui.jobs import JobQueue

REPLAY = """
import gradio as gr
from modules import img2img, scripts, txt2img


class Suffix(scripts.Script):
    def title(self):
        return "Replay suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Textbox(value="", label="Suffix")]

    def process(self, p, suffix):
        if suffix:
            p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
            p.extra_generation_params["Replay suffix"] = suffix


def replay_txt2img(prompt, suffix):
    # A1111 1.10's txt2img fields after (id_task, request), then the script args (0: no selected script).
    return txt2img.txt2img("task(replay)", None, prompt, "ugly", [], 1, 2, 6.0, 64, 64, False, 0.7, 2.0, "Latent",
                           0, 0, 0, "Use same checkpoint", "Use same sampler", "Use same scheduler", "", "", [],
                           0, suffix)


def replay_img2img(mode, image, mask=None, extra=()):
    return img2img.img2img("task(replay-i2i)", None, mode, "a house", "", [], image, None,
                           {"image": image, "mask": mask}, None, None, image, mask, 4, 0, 1, 1, 1, 6.0, 1.5, 0.5,
                           1, 64, 64, 0.5, 0, False, 32, 0, "", "", "", list(extra), False, [], "", "", [], 0, "")
"""


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("sd1")


@pytest.fixture
def served(tmp_path, model):
    """A state with the tiny model, its queue running, and the replaying extension loaded."""
    state = make_state(tmp_path, model)
    state.models.slot = types.SimpleNamespace(model=model)
    modules = load_extension(state, write_extension(tmp_path / "extensions", "replayer", {"replay.py": REPLAY}))
    state.queue = JobQueue(state)
    state.queue.start()
    yield state, modules["replay"]
    state.queue.stop()


def test_txt2img_entry_point_runs_a_queued_job_with_the_scripts_args(served):
    state, replay = served
    images, info_js, html_info, html_log = replay.replay_txt2img("a fox", "red")
    assert len(images) == 2 and all(isinstance(image, Image.Image) and image.size == (64, 64) for image in images)
    import json

    info = json.loads(info_js)
    assert info["all_prompts"] == ["a fox, red", "a fox, red"] and info["negative_prompt"] == "ugly"
    assert info["cfg_scale"] == 6.0 and "Replay suffix: red" in info["infotexts"][0]
    assert html_info.startswith("<p>a fox, red<br>") and html_log.startswith("<p class='comments'>")


def test_img2img_entry_point_modes_and_clear_errors(served):
    _, replay = served
    image = Image.new("RGB", (128, 128), (200, 40, 40))
    images, info_js, _, _ = replay.replay_img2img(0, image)
    assert len(images) == 1 and images[0].size == (64, 64)  # "Resize by" 0.5 of the 128x128 image
    assert "\"denoising_strength\": 0.5" in info_js and "Mask blur" not in info_js
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (0, 0, 64, 128))
    images, info_js, _, _ = replay.replay_img2img(4, image, mask)
    assert len(images) == 1 and "Mask blur: 4" in info_js  # inpainting: the mask went with the job
    drawn = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    drawn.paste((255, 255, 255, 255), (0, 0, 64, 128))
    images, info_js, _, _ = replay.replay_img2img(2, image, drawn)  # the inpaint tab's {"image", "mask"}
    assert len(images) == 1 and "Mask blur: 4" in info_js
    with pytest.raises(ValueError, match="mode 5 \\(batch\\) is not supported"):
        replay.replay_img2img(5, image)
    with pytest.raises(ValueError, match="override_settings_texts"):
        replay.replay_img2img(0, image, extra=["Clip skip: 2"])
    from modules import txt2img

    with pytest.raises(TypeError, match="21 leading UI fields"):
        txt2img.txt2img("task(short)", None, "a fox")


CONDFUNC = """
import helper_math
from modules.sd_hijack_utils import CondFunc

# Double only negative inputs; others go to the original.
CondFunc("helper_math.Scale.apply", lambda orig, self, x: orig(self, x) * 2, lambda orig, self, x: x < 0)
wrapped = CondFunc(helper_math.add, lambda orig, a, b: orig(a, b) + 100, None)
"""

HELPER_MATH = """
class Scale:
    def apply(self, x):
        return x * 3


def add(a, b):
    return a + b
"""


def test_condfunc_replaces_an_attribute_by_dotted_path_with_a_condition(tmp_path):
    state = make_state(tmp_path)
    folder = write_extension(tmp_path / "extensions", "patcher", {"patch.py": CONDFUNC},
                             {"helper_math.py": HELPER_MATH})
    modules = load_extension(state, folder)
    import helper_math

    assert helper_math.Scale().apply(2) == 6 and helper_math.Scale().apply(-2) == -12
    assert modules["patch"].wrapped(1, 2) == 103 and helper_math.add(1, 2) == 3  # a callable is not replaced
    from modules.sd_hijack_utils import CondFunc

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        CondFunc("helper_math.nothing", lambda orig: None, None)


CLIP = """
from modules import sd_hijack_clip
from modules.sd_hijack_clip import FrozenCLIPEmbedderWithCustomWordsBase, PromptChunk


class Wrapped:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def chunks_of(tokenizer, text):
    embedder = sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(Wrapped(tokenizer), None)
    return embedder, embedder.tokenize_line(text)
"""


def test_sd_hijack_clip_chunks_prompts_as_a1111(tmp_path, model):
    state = make_state(tmp_path)
    modules = load_extension(state, write_extension(tmp_path / "extensions", "clipper", {"clip.py": CLIP}))
    tokenizer = model.tokenizers[0]
    embedder, (chunks, count) = modules["clip"].chunks_of(tokenizer, "a (cat:1.5) BREAK a dog")
    assert isinstance(embedder, modules["clip"].FrozenCLIPEmbedderWithCustomWordsBase)
    assert len(chunks) == 2 and all(isinstance(c, modules["clip"].PromptChunk) for c in chunks)
    assert all(len(c.tokens) == 77 and len(c.multipliers) == 77 for c in chunks)
    assert chunks[0].tokens[0] == tokenizer.bos_token_id and 1.5 in chunks[0].multipliers
    assert count == 75 + 2  # the first chunk counts whole, then "a dog"
    assert embedder.get_target_prompt_token_count(80) == 150 and len(embedder.empty_chunk().tokens) == 77
    with pytest.raises(NotImplementedError, match="conditioning"):
        embedder(["a cat"])


LOWVRAM = """
from modules import lowvram, sd_hijack_optimizations, script_callbacks
from modules.sd_hijack_optimizations import SdOptimization


class Mine(SdOptimization):
    name = "mine"
    label = "an extension's"
    priority = 5


script_callbacks.on_list_optimizers(lambda found: found.append(Mine()))


def memory_report(model=None):
    return lowvram.is_enabled(model), sd_hijack_optimizations.get_available_vram()
"""


def test_lowvram_reads_our_memory_modes_and_moves_units(tmp_path):
    from webui.memory import MemoryOptions, configure

    state = make_state(tmp_path)
    modules = load_extension(state, write_extension(tmp_path / "extensions", "lowmem", {"low.py": LOWVRAM}))
    report = modules["low"].memory_report
    state.models.slot = None
    assert report()[0] is False and report()[1] > 0
    state.flags.lowvram = True
    assert report()[0] is True  # no model yet: what the flags ask for
    state.flags.lowvram = False
    model = make_tiny_model("sd1")
    configure(model, MemoryOptions("normal"), torch.device("cpu"))
    state.models.slot = types.SimpleNamespace(model=model)
    assert report()[0] is False
    from modules import lowvram, script_callbacks

    lowvram.setup_for_low_vram(model, use_medvram=True)
    assert report()[0] is True and model.memory_options.mode == "medvram"
    model.placement.activate("unet")
    lowvram.send_everything_to_cpu()
    assert model.placement.active is None and model.placement.where["unet"] == "offload"
    assert [o.title() for o in script_callbacks.list_optimizers_callback()] == ["mine - an extension's"]
    with pytest.raises(TypeError, match="loaded by this WebUI"):
        lowvram.setup_for_low_vram(object(), use_medvram=False)


EMBEDDINGS = """
from modules import sd_hijack
from modules.textual_inversion.textual_inversion import Embedding, EmbeddingDatabase


def listing():
    db = sd_hijack.model_hijack.embedding_db
    db.load_textual_inversion_embeddings(force_reload=True)
    return {name: (e.shape, e.vectors, tuple(e.vec.shape), e.checksum()) for name, e in db.word_embeddings.items()}


def skipped():
    return sorted(EmbeddingDatabase().skipped_embeddings)


def made():
    import torch
    return Embedding(torch.zeros(3, 8), "made", step=7)
"""


def test_textual_inversion_shapes_over_our_embeddings(tmp_path, model):
    import hashlib

    state = make_state(tmp_path)
    state.models.slot = types.SimpleNamespace(model=model)
    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": torch.randn(3, 32)}, folder / "fits.safetensors")
    save_file({"emb_params": torch.randn(2, 16)}, folder / "narrow.safetensors")
    modules = load_extension(state, write_extension(tmp_path / "extensions", "ti", {"ti.py": EMBEDDINGS}))
    found = modules["ti"].listing()
    digest = hashlib.sha256((folder / "fits.safetensors").read_bytes()).hexdigest()
    assert found == {"fits": (32, 3, (3, 32), digest[:12])}
    assert modules["ti"].skipped() == ["narrow"]
    made = modules["ti"].made()
    assert (made.name, made.shape, made.vectors, made.step) == ("made", 8, 3, 7)
    with pytest.raises(ValueError, match="no file"):
        made.checksum()
