"""Extension scripts running in our engine: always-on hooks, a selectable script's run(), the cfg
and image-saving callbacks, and scripts that fail without stopping generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from script_helpers import load_extension, make_state, write_extension
from tiny_models import make_tiny_model
from webui.generation.images import read_infotext
from webui.generation.img2img import Img2ImgParams
from webui.generation.params import Txt2ImgParams
from webui.jobs import JobQueue

SUFFIX = """
import gradio as gr
from modules import scripts

class Suffix(scripts.Script):
    def title(self):
        return "Prompt suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(value=True, label="Enabled"), gr.Textbox(value="red", label="Suffix")]

    def process(self, p, enabled, suffix):
        if enabled:
            p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
            p.extra_generation_params["Suffix"] = suffix
"""


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("sd1")


@pytest.fixture
def run(tmp_path, model):
    """run(scripts={file: source}, kind, params..., script_args=) -> (job, modules, state)."""
    queues = []

    def go(scripts=None, kind="txt2img", script_args=None, state=None, **values):
        if state is None:
            state = make_state(tmp_path, model)
            modules = load_extension(state, write_extension(tmp_path / "extensions", "ext", scripts)) if scripts else {}
        else:
            modules = {}
        queue = JobQueue(state)
        queues.append(queue)
        queue.start()
        values = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler", **values}
        params = Img2ImgParams(**values) if kind == "img2img" else Txt2ImgParams(**values)
        job = queue.submit(kind, params, "tester", script_args=script_args).wait(120)
        assert job.status == "done", job.error
        return job, modules, state

    yield go
    for queue in queues:
        queue.stop()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_an_always_on_script_changes_the_image_and_the_infotext(run):
    job, _, state = run({"suffix.py": SUFFIX})
    text = job.result.infotexts[0]
    assert text.startswith("a cat, red\n") and "Suffix: red" in text
    assert read_infotext(job.result.paths[0]) == text and job.result.prompts == ["a cat, red"]

    direct, _, _ = run(None, prompt="a cat, red")  # the prompt the script made, given directly
    assert np.array_equal(pixels(job.result.images[0]), pixels(direct.result.images[0]))

    runner = state.runners["txt2img"]
    off, _, _ = run(state=state, script_args=[0, False, "red"])  # the script's checkbox off
    plain, _, _ = run(None)
    assert off.result.infotexts[0].startswith("a cat\n") and "Suffix" not in off.result.infotexts[0]
    assert np.array_equal(pixels(off.result.images[0]), pixels(plain.result.images[0]))
    assert not np.array_equal(pixels(off.result.images[0]), pixels(job.result.images[0]))
    assert runner.default_args() == [0, True, "red"]


def test_the_hires_pass_follows_a_script_that_changed_the_prompts(run):
    job, _, _ = run({"suffix.py": SUFFIX}, enable_hr=True, hr_scale=1.5, denoising_strength=0.5)
    text = job.result.infotexts[0]
    assert text.startswith("a cat, red\n") and "Hires prompt" not in text and "Hires upscale: 1.5" in text
    with_own, _, _ = run({"suffix.py": SUFFIX}, enable_hr=True, hr_scale=1.5, hr_prompt="a dog")
    assert "Hires prompt: a dog" in with_own.result.infotexts[0]


RECORDER = """
from PIL import ImageDraw
from modules import scripts

calls = []

class Recorder(scripts.Script):
    def title(self):
        return "Recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def before_process(self, p):
        calls.append(("before_process", p.all_prompts))

    def process(self, p):
        calls.append(("process", list(p.all_seeds), list(p.all_prompts)))
        p.extra_generation_params["Per image"] = [f"image {i}" for i in range(len(p.all_prompts))]
        p.extra_generation_params["Computed"] = lambda index, **_: f"#{index}"

    def before_process_batch(self, p, batch_number, prompts, seeds, subseeds):
        calls.append(("before_process_batch", batch_number, list(seeds)))
        prompts[0] = prompts[0] + " first"  # in place, as A1111 scripts do

    def process_batch(self, p, batch_number, prompts, seeds, subseeds):
        calls.append(("process_batch", batch_number, list(prompts)))

    def postprocess_batch(self, p, images, batch_number):
        calls.append(("postprocess_batch", batch_number, tuple(images.shape),
                      0 <= float(images.min()) and float(images.max()) <= 1))

    def postprocess_batch_list(self, p, pp, batch_number):
        calls.append(("postprocess_batch_list", batch_number, len(pp.images)))
        if batch_number == 1:
            pp.images = pp.images[:1]  # drop the last image of the second batch

    def postprocess_image(self, p, pp):
        calls.append(("postprocess_image", p.iteration, p.batch_index, pp.image.size))
        pp.image = pp.image.copy()
        ImageDraw.Draw(pp.image).rectangle((0, 0, 15, 15), fill=(255, 0, 0))

    def postprocess(self, p, processed):
        calls.append(("postprocess", len(processed.images), list(processed.all_seeds)))
"""


def test_batch_and_image_hooks_see_a1111_values(run):
    job, modules, _ = run({"recorder.py": RECORDER}, batch_size=2, n_iter=2)
    calls = modules["recorder"].calls
    assert [c[0] for c in calls] == [
        "before_process", "process",
        "before_process_batch", "process_batch", "postprocess_batch", "postprocess_batch_list",
        "postprocess_image", "postprocess_image",
        "before_process_batch", "process_batch", "postprocess_batch", "postprocess_batch_list",
        "postprocess_image", "postprocess"]
    assert calls[0] == ("before_process", None)  # prompts are not set up yet
    assert calls[1] == ("process", [5, 6, 7, 8], ["a cat"] * 4)
    assert calls[2] == ("before_process_batch", 0, [5, 6]) and calls[8] == ("before_process_batch", 1, [7, 8])
    assert calls[3] == ("process_batch", 0, ["a cat first", "a cat"])
    assert calls[4] == ("postprocess_batch", 0, (2, 3, 64, 64), True)
    assert [c[1:3] for c in calls if c[0] == "postprocess_image"] == [(0, 0), (0, 1), (1, 0)]
    assert calls[-1] == ("postprocess", 3, [5, 6, 7])

    result = job.result
    assert len(result.images) == 3 and result.seeds == [5, 6, 7]
    assert [t.split("\n")[0] for t in result.infotexts] == ["a cat first", "a cat", "a cat first"]
    assert "Per image: image 1" in result.infotexts[1] and "Computed: #2" in result.infotexts[2]
    for image, path in zip(result.images, result.paths):  # the changed image is the one kept and saved
        assert tuple(image.getpixel((3, 3))) == (255, 0, 0)
        with Image.open(path) as saved:
            assert tuple(saved.convert("RGB").getpixel((3, 3))) == (255, 0, 0)


TWICE = """
import copy
import gradio as gr
from modules import scripts
from modules.processing import Processed, fix_seed, process_images

class Twice(scripts.Script):
    def title(self):
        return "Several seeds"

    def ui(self, is_img2img):
        return [gr.Slider(minimum=1, maximum=4, step=1, value=2, label="Times")]

    def run(self, p, times):
        fix_seed(p)
        images, infotexts = [], []
        for i in range(int(times)):
            copied = copy.copy(p)
            copied.seed = p.seed + 100 * i
            copied.prompt = f"{p.prompt} {i}"
            processed = process_images(copied)
            images += processed.images
            infotexts += processed.infotexts
        return Processed(p, images, p.seed, infotexts[0], infotexts=infotexts)
"""


def test_a_selected_script_runs_instead_and_always_on_scripts_still_apply(tmp_path, model, run):
    state = make_state(tmp_path, model)
    load_extension(state, write_extension(tmp_path / "extensions", "ext", {"suffix.py": SUFFIX, "twice.py": TWICE}))
    runner = state.runners["txt2img"]
    assert [s.title() for s in runner.selectable_scripts] == ["Several seeds"]
    assert [s.title() for s in runner.alwayson_scripts] == ["Prompt suffix"]
    script = runner.find("several SEEDS")
    args = runner.default_args()
    args[0], args[script.args_from] = runner.selectable_index(script), 3
    job, _, _ = run(state=state, script_args=args)
    texts = job.result.infotexts
    assert len(job.result.images) == 3 and len(texts) == 3
    assert [t.split("\n")[0] for t in texts] == ["a cat 0, red", "a cat 1, red", "a cat 2, red"]
    assert ["Seed: 5," in texts[0], "Seed: 105," in texts[1], "Seed: 205," in texts[2]] == [True] * 3

    plain, _, _ = run(state=state)  # dropdown at None: no run(), the usual generation
    assert len(plain.result.images) == 1 and plain.result.infotexts[0].startswith("a cat, red\n")


BROKEN = """
from modules import scripts, script_callbacks

class Broken(scripts.Script):
    def title(self):
        return "Broken"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p):
        raise RuntimeError("process is broken")

    def postprocess_image(self, p, pp):
        raise ValueError("postprocess_image is broken")

def bad_callback(params):
    raise KeyError("callback is broken")

script_callbacks.on_cfg_denoiser(bad_callback)
script_callbacks.on_before_image_saved(bad_callback)
"""


def test_a_failing_script_is_reported_and_generation_goes_on(run):
    job, _, state = run({"broken.py": BROKEN, "suffix.py": SUFFIX})
    assert len(job.result.images) == 1 and job.result.paths[0].is_file()
    assert "Suffix: red" in job.result.infotexts[0]  # the other script still ran
    errors = state.runners["txt2img"].errors
    assert [(Path(f).name, hook) for f, hook, _ in errors] == [("broken.py", "process"), ("broken.py", "postprocess_image")]
    assert "process is broken" in errors[0][2]
    assert {category for category, _, _ in state.callbacks.errors} == {"cfg_denoiser", "before_image_saved"}


CFG = """
from modules import script_callbacks

steps = []

def denoiser(params):
    steps.append(("denoiser", params.sampling_step, params.total_sampling_steps, params.x.shape[0],
                  params.text_cond.shape[0], params.text_uncond.shape[0]))

def denoised(params):
    steps.append(("denoised", params.sampling_step, params.total_sampling_steps, params.x.shape[0]))

def after_cfg(params):
    steps.append(("after_cfg", params.sampling_step, params.total_sampling_steps))

script_callbacks.on_cfg_denoiser(denoiser)
script_callbacks.on_cfg_denoised(denoised)
script_callbacks.on_cfg_after_cfg(after_cfg)
"""


def test_cfg_callbacks_fire_every_step_with_a1111_counts(run):
    _, modules, _ = run({"cfg.py": CFG}, steps=3, batch_size=2, enable_hr=True, hr_scale=1.5,
                        hr_second_pass_steps=2, denoising_strength=0.5)
    steps = modules["cfg"].steps
    assert [s[1:3] for s in steps if s[0] == "denoiser"] == [(0, 3), (1, 3), (2, 3), (0, 2), (1, 2)]
    assert [s[1:3] for s in steps if s[0] == "after_cfg"] == [(0, 3), (1, 3), (2, 3), (0, 2), (1, 2)]
    assert all(s[3:] == (2, 2, 2) for s in steps if s[0] == "denoiser")  # batch of 2: x, conds, unconds
    assert all(s[3] == 4 for s in steps if s[0] == "denoised")  # conds then unconds


ZERO = """
from modules import script_callbacks

def zero(params):
    params.x = params.x * 0

script_callbacks.on_cfg_after_cfg(zero)
"""


def test_a_cfg_callback_changes_what_is_generated(run):
    changed, _, _ = run({"zero.py": ZERO})
    plain, _, _ = run(None)
    assert not np.array_equal(pixels(changed.result.images[0]), pixels(plain.result.images[0]))


SAVING = """
from pathlib import Path
from modules import script_callbacks

saved = []

def before(params):
    params.filename = str(Path(params.filename).parent / f"custom-{params.p.seed}.png")
    params.image = params.image.convert("L").convert("RGB")
    params.pnginfo["parameters"] += ", Saved by: test"

def after(params):
    saved.append(params.filename)

script_callbacks.on_before_image_saved(before)
script_callbacks.on_image_saved(after)
"""


def test_before_image_saved_changes_the_file_name_image_and_text(run):
    job, modules, _ = run({"saving.py": SAVING})
    path = job.result.paths[0]
    assert path.name == "custom-5.png" and modules["saving"].saved == [str(path)]
    with Image.open(path) as saved:
        rgb = np.asarray(saved.convert("RGB"))
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # grey
        assert read_infotext(saved).endswith(", Saved by: test")
    assert "Saved by" not in job.result.infotexts[0]  # what the job reports is what was generated


IMG2IMG_ONLY = """
from modules import scripts

class Strength(scripts.Script):
    def title(self):
        return "Strength"

    def show(self, is_img2img):
        return scripts.AlwaysVisible if is_img2img else False

    def process(self, p):
        assert p.init_images
        p.denoising_strength = 0.25
        p.extra_generation_params["Seen images"] = len(p.init_images)
"""


def test_img2img_scripts_and_per_tab_visibility(tmp_path, model, run):
    state = make_state(tmp_path, model)
    load_extension(state, write_extension(tmp_path / "extensions", "ext", {"strength.py": IMG2IMG_ONLY}))
    assert state.runners["txt2img"].scripts == [] and len(state.runners["img2img"].alwayson_scripts) == 1
    init = Image.new("RGB", (64, 64), (90, 120, 200))
    job, _, _ = run(state=state, kind="img2img", init_images=[init], denoising_strength=0.75)
    text = job.result.infotexts[0]
    assert "Denoising strength: 0.25" in text and "Seen images: 1" in text


def test_interrupting_a_selected_script_stops_its_later_calls(tmp_path, model):
    state = make_state(tmp_path, model)
    load_extension(state, write_extension(tmp_path / "extensions", "ext", {"twice.py": TWICE}))
    runner = state.runners["txt2img"]
    args = runner.default_args()
    args[0], args[runner.selectable_scripts[0].args_from] = 1, 4
    queue = JobQueue(state)
    queue.start()
    try:
        params = Txt2ImgParams(prompt="a cat", steps=6, width=64, height=64, seed=5, sampler_name="Euler")
        job = queue.submit("txt2img", params, "o", script_args=args)
        while job.step < 2 and not job.is_finished:  # inside the script's first process_images call
            job.wait(0.005)
        assert queue.interrupt(job.id, "o")
        assert job.wait(60).status == "interrupted" and len(job.result.images) <= 1
    finally:
        queue.stop()


EXTRA_NETWORK = """
from modules import extra_networks, script_callbacks

calls = []

class Hypernet(extra_networks.ExtraNetwork):
    def __init__(self, name):
        super().__init__(name)

    def activate(self, p, params_list):
        calls.append((self.name, "activate", p.iteration, [params.items for params in params_list]))

    def deactivate(self, p):
        calls.append((self.name, "deactivate"))

extra_networks.register_extra_network(Hypernet("hypernet"))
extra_networks.register_extra_network(Hypernet("other"))
TEXT, DATA = extra_networks.parse_prompt("a cat <hypernet:fluffy:0.5> <lora:x:1>")
"""


def test_extensions_extra_networks_are_activated_per_batch_and_deactivated_once(run):
    # A1111's extra-network registry: every registered network is activated each batch (with the batch's tags of
    # its kind, else none), and deactivated once when the batches are done; the tag does not reach the text encoder.
    job, modules, state = run({"hypernet.py": EXTRA_NETWORK}, prompt="a cat <hypernet:fluffy:0.5>", n_iter=2)
    module = modules["hypernet"]
    assert module.TEXT == "a cat  " and [p.items for p in module.DATA["hypernet"]] == [["fluffy", "0.5"]]
    assert module.calls == [
        ("hypernet", "activate", 0, [["fluffy", "0.5"]]), ("other", "activate", 0, []),
        ("hypernet", "activate", 1, [["fluffy", "0.5"]]), ("other", "activate", 1, []),
        ("hypernet", "deactivate"), ("other", "deactivate"),
    ]
    plain, _, _ = run(None, prompt="a cat", n_iter=2)
    assert np.array_equal(pixels(job.result.images[0]), pixels(plain.result.images[0]))  # the tag is not text


RESIZER = """
from modules import scripts
from modules.processing import process_images

class Bigger(scripts.Script):
    def title(self):
        return "Bigger"

    def run(self, p):
        p.width = p.height = 96  # as an upscaling script would
        return process_images(p)
"""


def test_the_api_info_gives_the_size_a_script_left(run):
    # ultimate-upscale's pattern: the request says 64x64, the script makes 96x96; info says what came out.
    from webui.api.generation import info

    job, _, state = run({"bigger.py": RESIZER}, script_args=[1])
    assert job.result.images[0].size == (96, 96) and job.result.size == (96, 96)
    reported = info(state, job)
    assert (reported["width"], reported["height"]) == (96, 96) and "Size: 96x96" in reported["infotexts"][0]
