"""The `modules` package extensions import: settings, flags, callbacks, basedir, infotext, images,
UI components, and the `launch` helpers install.py uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

import launch
from script_helpers import load_extension, make_state, write_extension
from webui import compat
from webui.options import Options

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = """
import gradio as gr
from modules import script_callbacks, scripts, shared

base = scripts.basedir()
changes = []

def on_ui_settings():
    section = ("myext", "My extension")
    shared.opts.add_option("myext_strength", shared.OptionInfo(
        0.5, "Strength", gr.Slider, {"minimum": 0, "maximum": 1}, section=section,
        onchange=lambda: changes.append(shared.opts.myext_strength)).info("how strong"))
    shared.opts.add_option("myext_mode", shared.OptionInfo("fast", "Mode", gr.Radio, {"choices": ["fast", "slow"]},
                                                           section=section).needs_restart())
    shared.opts.add_option("myext.dotted", shared.OptionInfo(True, "Dotted key", section=section))

script_callbacks.on_ui_settings(on_ui_settings)
"""


@pytest.fixture
def state(tmp_path):
    state = make_state(tmp_path)
    compat.install()
    compat.bind(state)
    return state


def test_extension_settings_are_read_set_validated_and_saved(tmp_path, state):
    from modules import shared

    modules = load_extension(state, write_extension(tmp_path / "extensions", "myext", {"settings.py": SETTINGS}))
    assert modules["settings"].base == str(tmp_path / "extensions" / "myext")
    state.callbacks.run("ui_settings")  # the Settings page does this before it is built
    opts = shared.opts
    assert opts.myext_strength == 0.5 and getattr(opts, "myext.dotted") is True
    assert getattr(opts, "no_such_setting", "fallback") == "fallback"
    assert opts.get_default("myext_mode") == "fast" and opts.CLIP_stop_at_last_layers == 1
    assert opts.grid_save is True  # an A1111 setting we do not use reads as A1111's default
    info = state.options.registered()["myext_strength"]
    assert info.section == ("myext", "My extension") and "how strong" in info.comment_after

    assert opts.set("myext_strength", 0.8) and modules["settings"].changes == [0.8]
    assert not opts.set("myext_strength", "very")  # the wrong type is refused
    with pytest.raises(ValueError):
        opts.myext_mode = 3
    opts.myext_mode = "slow"
    assert state.options.as_dict()["myext_mode"] == "slow"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["myext_strength"] == 0.8 and saved["myext_mode"] == "slow" and "CLIP_stop_at_last_layers" in saved

    # A new start: the stored values come back once the extension registers its settings again,
    # and a stored value of an extension not loaded is kept in the file.
    saved["other_ext_key"] = 7
    (tmp_path / "config.json").write_text(json.dumps(saved))
    again = Options(tmp_path / "config.json")
    again.register("myext_strength", 0.5)
    assert again["myext_strength"] == 0.8 and "myext_mode" not in again
    again.update({"myext_strength": 1})
    assert json.loads((tmp_path / "config.json").read_text())["other_ext_key"] == 7


def test_cmd_opts_state_and_paths(tmp_path, state):
    from modules import paths, shared

    state.flags.my_flag = "x"  # as a preload.py would have added it
    assert shared.cmd_opts.my_flag == "x" and shared.cmd_opts.unknown_flag is None
    assert shared.cmd_opts.data_dir == tmp_path
    assert paths.data_path == str(tmp_path) and paths.script_path == str(tmp_path)  # A1111's root, where extensions write
    assert not shared.state.interrupted and shared.sd_model is None
    assert shared.prompt_styles.styles == {}


def test_folders_extensions_read_are_absolute_and_in_the_data_dir(tmp_path, state, monkeypatch):
    # tagcomplete builds Path(cmd_opts.embeddings_dir); images-browser lists opts.outdir_txt2img_samples and
    # writes to opts.temp_dir: relative or missing, they pointed into the project folder (or crashed).
    from modules import shared

    monkeypatch.chdir(ROOT)
    assert shared.cmd_opts.embeddings_dir == str(tmp_path / "embeddings")
    assert shared.cmd_opts.lora_dir == str(tmp_path / "models" / "Lora")
    assert shared.cmd_opts.hypernetwork_dir == str(tmp_path / "models" / "hypernetworks")
    assert shared.cmd_opts.ckpt_dir is None  # A1111's default too
    state.flags.lora_dir = "my-loras"  # given relative: resolved, as the WebUI itself reads it
    assert shared.cmd_opts.lora_dir == str(ROOT / "my-loras")
    assert shared.opts.outdir_txt2img_samples == str(tmp_path / "outputs" / "txt2img-images")
    assert shared.opts.outdir_img2img_grids == str(tmp_path / "outputs" / "img2img-grids")
    assert shared.opts.temp_dir == str(tmp_path / "tmp") and shared.opts.outdir_samples == ""
    assert shared.opts.data["outdir_extras_samples"] == str(tmp_path / "outputs" / "extras-images")


CALLBACKS = """
from modules import script_callbacks

seen = []
script_callbacks.on_app_started(lambda demo, app: seen.append(("started", demo, app)))
script_callbacks.on_model_loaded(lambda model: seen.append(("model", model)))
script_callbacks.on_infotext_pasted(lambda text, params: params.update({"Seen": "yes"}))

def first():
    seen.append("first")

script_callbacks.on_before_ui(first)
script_callbacks.on_before_ui(lambda: 1 / 0)
script_callbacks.on_before_ui(lambda: seen.append("after the error"))
script_callbacks.on_ui_tabs(lambda: [("blocks", "My tab", "my_tab")])
"""


def test_callbacks_are_owned_by_their_file_and_errors_do_not_stop_the_rest(tmp_path, state):
    from modules import script_callbacks

    modules = load_extension(state, write_extension(tmp_path / "extensions", "cb", {"cb.py": CALLBACKS}))
    seen = modules["cb"].seen
    state.callbacks.run("app_started", None, "app")
    state.callbacks.run("before_ui")
    assert seen == [("started", None, "app"), "first", "after the error"]
    assert [e[0] for e in state.callbacks.errors] == ["before_ui"]
    assert script_callbacks.ui_tabs_callback() == [("blocks", "My tab", "my_tab")]

    params = {}
    state.callbacks.run("infotext_pasted", "text", params)
    assert params == {"Seen": "yes"}

    script_callbacks.remove_callbacks_for_function(modules["cb"].first)
    state.callbacks.run("before_ui")
    assert seen.count("first") == 1
    state.callbacks.remove_owner(tmp_path / "extensions" / "cb" / "scripts" / "cb.py")
    assert state.callbacks.callbacks("app_started") == []


def test_model_loaded_callbacks_fire_when_a_checkpoint_loads(tmp_path):
    from webui.flags import parse_flags
    from webui.state import SharedState

    from checkpoint_files import write_diffusers_folder
    from tiny_models import make_tiny_model

    write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full"]))
    loaded = []
    state.callbacks.add("model_loaded", loaded.append)
    model = state.models.current()
    assert loaded == [model]
    state.models.current()
    assert loaded == [model]  # already loaded: no second call


BASEDIR = """
import helper_package
from modules import scripts
found = (scripts.basedir(), helper_package.VALUE)
"""


def test_basedir_and_the_extension_folder_on_sys_path(tmp_path, state):
    folder = write_extension(tmp_path / "extensions", "withpkg", {"uses.py": BASEDIR},
                             {"helper_package/__init__.py": "VALUE = 42\n"})
    modules = load_extension(state, folder)
    assert modules["uses"].found == (str(folder), 42)
    assert str(folder) not in sys.path  # restored after loading


def test_processing_helpers_infotext_alias_and_grids(tmp_path, state):
    from modules import generation_parameters_copypaste, images, infotext_utils, processing, script_callbacks

    p = processing.StableDiffusionProcessingTxt2Img(prompt="a", seed=-1, subseed=-1, sampler_index="Euler a",
                                                     do_not_save_samples=True, steps=4)
    processing.fix_seed(p)
    assert p.seed >= 0 and p.subseed >= 0 and p.sampler_name == "Euler a" and p.save_images is False
    text = "a fox\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, Seed: 3, Size: 64x96"
    for module in (infotext_utils, generation_parameters_copypaste):
        params = module.parse_generation_parameters(text)
        assert params["Prompt"] == "a fox" and params["Steps"] == "4" and params["Size-2"] == "96"

    grids = []
    script_callbacks.on_image_grid(lambda params: grids.append((params.cols, params.rows)))
    grid = images.image_grid([Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue", "white")])
    assert grid.size == (16, 16) and grids == [(2, 2)]
    cols = [[images.GridAnnotation("steps: 10")], [images.GridAnnotation("steps: 20")]]
    rows = [[images.GridAnnotation("seed: 1")], [images.GridAnnotation("seed: 2", is_active=False)]]
    labelled = images.draw_grid_annotations(grid, 8, 8, cols, rows)
    assert labelled.width > grid.width and labelled.height > grid.height


def test_save_image_runs_the_save_callbacks_and_forced_names(tmp_path, state):
    from modules import images, script_callbacks

    names = []
    script_callbacks.on_before_image_saved(lambda params: names.append(Path(params.filename).name))
    path, txt = images.save_image(Image.new("RGB", (8, 8)), str(tmp_path / "out"), "", seed=7, prompt="x",
                                  info="x\nSteps: 1", save_to_dirs=False)
    assert Path(path) == tmp_path / "out" / "00000-7.png" and names == ["00000-7.png"] and txt is None
    forced, _ = images.save_image(Image.new("RGB", (8, 8)), str(tmp_path / "out"), "grid", info="g",
                                  forced_filename="mine", save_to_dirs=False)
    assert Path(forced) == tmp_path / "out" / "mine.png" and Path(forced).is_file()


def test_save_image_puts_images_and_grids_in_the_dated_subfolder_as_a1111(tmp_path, state):
    """A1111's "Save images/grids to a subdirectory" (on by default, pattern [date]): a script that saves
    to p.outpath_samples (as ultimate-upscale does) lands where the WebUI's own images are."""
    import datetime

    from modules import images

    today = datetime.date.today().strftime("%Y-%m-%d")
    image = Image.new("RGB", (8, 8))
    path, _ = images.save_image(image, str(tmp_path), "", seed=3, prompt="a fox")
    assert Path(path) == tmp_path / today / "00000-3.png"
    grid, _ = images.save_image(image, str(tmp_path / "grids"), "my_grid", seed=3, prompt="a fox", grid=True)
    assert Path(grid).parent == tmp_path / "grids" / today and Path(grid).name.startswith("my_grid-")
    forced, _ = images.save_image(image, str(tmp_path), "", forced_filename="mine")
    assert Path(forced) == tmp_path / today / "mine.png"
    bare, _ = images.save_image(image, str(tmp_path), "", seed=4, no_prompt=True)  # no_prompt: no subfolder
    assert Path(bare).parent == tmp_path


def test_ui_components_work_in_current_gradio(state):
    from modules.ui_components import DropdownMulti, FormRow, InputAccordion, ToolButton

    with gr.Blocks():
        with FormRow():
            button = ToolButton("🔄", elem_id="refresh")
        with InputAccordion(True, label="My feature") as enabled:
            inner = gr.Slider(minimum=0, maximum=2, value=1, label="Inside")
        multi = DropdownMulti(choices=["a", "b"], value=["a"], label="Many")
    assert "tool" in button.elem_classes and isinstance(enabled, gr.Checkbox) and enabled.value is True
    inside = [c for child in enabled.accordion.children for c in [child, *getattr(child, "children", [])]]
    assert inner in inside and multi.multiselect


def test_launch_helpers_for_install_py(tmp_path):
    assert launch.is_installed("lark") and launch.is_installed("PIL") and not launch.is_installed("no_such_pkg_xyz")
    assert launch.python == sys.executable and len(launch.commit_hash()) == 40
    assert launch.run("echo hello", live=False).strip() == "hello"
    with pytest.raises(RuntimeError, match="Couldn't do it"):
        launch.run("exit 3", errdesc="Couldn't do it", live=False)
    script = tmp_path / "install.py"
    script.write_text("import launch\n"
                      "print('lark' if launch.is_installed('lark') else 'missing')\n"
                      "launch.run_pip('install --no-index --no-deps lark', 'lark', live=False)\n"
                      "print('done')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "install.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["lark", "Installing", "lark", "done"]


def test_more_a1111_module_names_extensions_use(tmp_path, state):
    import gradio as gr
    import torch
    from modules import extras, processing, safe, scripts, shared, torch_utils

    # Upscalers as A1111 lists them (ultimate-upscale indexes them and calls .scaler.upscale).
    upscalers = shared.sd_upscalers
    assert [u.name for u in upscalers][:3] == ["None", "Lanczos", "Nearest"]
    assert "Latent" not in [u.name for u in upscalers] and shared.latent_upscale_modes["Latent"]["mode"] == "bilinear"
    image = Image.new("RGB", (40, 24), (200, 30, 30))
    lanczos = upscalers[1]
    assert lanczos.scaler.upscale(image, 2, lanczos.data_path).size == (80, 48)
    assert upscalers[0].scaler.upscale(image, 2, None) is image  # None leaves the image alone, as in A1111
    # Gradio 3's gr.inputs, with `default=`.
    slider = gr.inputs.Slider(minimum=1, maximum=4, step=1, default=3, label="Ratio")
    assert isinstance(slider, gr.Slider) and slider.value == 3
    # create_binary_mask: the alpha channel when it has transparency, else grey levels, rounded.
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 200))
    assert list(processing.create_binary_mask(rgba).getdata()) == [0, 255, 0, 0]
    grey = Image.new("L", (2, 1))
    grey.putpixel((0, 0), 129)
    assert list(processing.create_binary_mask(grey.convert("RGB")).getdata()) == [255, 0]
    # safe.load never unpickles code; torch_utils.get_param.
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(safe.load(tmp_path / "plain.pt")["w"], torch.ones(2))
    torch.save({"w": torch.ones(2), "code": Image.new}, tmp_path / "code.pt")
    with pytest.raises(Exception):
        safe.unsafe_torch_load(tmp_path / "code.pt")
    assert torch_utils.get_param(torch.nn.Linear(2, 2)).shape == (2, 2)
    # extras.run_pnginfo and scripts.list_scripts (images-browser).
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 3")
    image.save(tmp_path / "cat.png", pnginfo=info)
    _, geninfo, listing = extras.run_pnginfo(Image.open(tmp_path / "cat.png"))
    assert geninfo == "a cat\nSteps: 3" and "<b>parameters</b>" in listing
    folder = write_extension(tmp_path / "extensions", "lister", {"b.py": "", "a.py": ""})
    state.extensions = [type("Ext", (), {"path": folder, "active": True})()]
    assert [f.filename for f in scripts.list_scripts("scripts", ".py")] == ["a.py", "b.py"]


def test_ui_common_save_files_saves_gallery_images_into_outdir_save(tmp_path, state):
    # images-browser moves an image to another folder with A1111's Save button function: it points
    # opts.outdir_save at the folder and passes the generation's JSON and the gallery's images.
    import json
    import zipfile

    from PIL import Image
    from modules import shared, ui_common
    from webui.generation.images import read_infotext

    infotext = "a red ball\nNegative prompt: blurry\nSteps: 2, Seed: 42, Size: 8x8"
    data = json.dumps({"infotexts": [infotext], "index_of_first_image": 0, "width": 8, "height": 8, "steps": 2})
    assert shared.opts.outdir_save == str(tmp_path / "log" / "images")
    shared.opts.outdir_save = str(tmp_path / "kept")
    update, message = ui_common.save_files(data, [(Image.new("RGB", (8, 8), "red"), None)], False, 0)
    (saved,) = update["value"]
    assert Path(saved).parent == tmp_path / "kept" and "42" in saved and "Saved: " in message  # no [date] folder
    assert read_infotext(Image.open(saved)) == infotext
    rows = (tmp_path / "kept" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("prompt,seed,width") and rows[1].startswith("a red ball,42,8,8")
    # A data: URL (or bare base64) as a gallery entry, and the Zip button.
    import base64
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    update, _ = ui_common.save_files(data, [encoded], True, -1)
    archive, image = update["value"]
    assert archive.endswith(".zip") and zipfile.ZipFile(archive).namelist() == [image.rsplit("/", 1)[1]]
    assert len((tmp_path / "kept" / "log.csv").read_text().splitlines()) == 3
