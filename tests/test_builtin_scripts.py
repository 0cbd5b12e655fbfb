"""The built-in scripts (X/Y/Z plot, Prompt matrix, Prompts from file or textbox), loaded as
extensions and run through the job queue on a tiny model, with script_args in the runner's
order as the UI sends them."""

import inspect
import os

import pytest
from PIL import Image, ImageChops

from checkpoint_files import write_diffusers_folder
from tiny_models import make_tiny_model
from webui.extensions.loader import start_extensions
from webui.flags import parse_flags
from webui.generation.params import Txt2ImgParams
from webui.jobs import JobQueue
from webui.state import SharedState

SIZE = 64


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "tiny")
    write_diffusers_folder(make_tiny_model("sd1", seed=1), data / "models" / "Stable-diffusion" / "tiny2")
    state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all", "--precision", "full"]))
    state.queue = JobQueue(state)
    state.queue.start()
    start_extensions(state)
    yield state
    state.queue.stop()


def script(state, title: str, tab: str = "txt2img"):
    found = state.runners[tab].find(title)
    assert found is not None, f"{title} is not loaded: {state.runners[tab].errors}"
    return found


def script_args(state, title: str, **values) -> list:
    """The runner's default args with `title` chosen in the dropdown and its run() arguments set by name."""
    runner = state.runners["txt2img"]
    chosen = script(state, title)
    args = runner.default_args()
    args[0] = runner.selectable_index(chosen)
    names = list(inspect.signature(chosen.run).parameters)[1:]  # after p
    for name, value in values.items():
        args[chosen.args_from + names.index(name)] = value
    return args


def run(state, params: Txt2ImgParams, args: list):
    job = state.queue.submit("txt2img", params, "tester", script_args=args)
    job.wait(600)
    assert job.status == "done", job.error
    return job.result


def module_globals(state, title: str) -> dict:
    """The script file's functions (loaded by path, so not importable by name)."""
    return type(script(state, title)).run.__globals__


def differs_from_white(image: Image.Image, box) -> bool:
    region = image.crop(box).convert("RGB")
    return ImageChops.difference(region, Image.new("RGB", region.size, "white")).getbbox() is not None


def test_xyz_axis_values(state):
    xyz = module_globals(state, "X/Y/Z plot")
    assert xyz["expand_range"]("1-5", int) == [1, 2, 3, 4, 5]
    assert xyz["expand_range"]("1-5 (+2)", int) == [1, 3, 5]
    assert xyz["expand_range"]("10-4 (-3)", int) == [10, 7, 4]
    assert xyz["expand_range"]("1-3 [5]", int) == [1, 1, 2, 2, 3]
    assert xyz["expand_range"]("0.5-1 [3]", float) == [0.5, 0.75, 1.0]
    assert xyz["expand_range"]("-1", int) == [-1]
    assert xyz["split_values"]('"a, b", c,d ') == ["a, b", "c", "d"]
    steps = next(axis for axis in xyz["AXES"] if axis.label == "Steps")
    assert xyz["axis_values"](steps, "1-3, 7", [], False) == [1, 2, 3, 7]


def test_xyz_plot_over_seed_and_steps(state):
    params = Txt2ImgParams(prompt="a fox", width=SIZE, height=SIZE, steps=2, seed=5)
    args = script_args(state, "X/Y/Z plot", x_type="Seed", x_values="11, 12, 13", y_type="Steps", y_values="1-2",
                       include_lone_images=True)
    result = run(state, params, args)

    assert len(result.images) == 1 + 6 and len(result.infotexts) == 1 + 6
    grid = result.images[0]
    cells = result.images[1:]  # X varies fastest: (11,1) (12,1) (13,1) (11,2) ...
    pad_left, pad_top = grid.width - 3 * SIZE, grid.height - 2 * SIZE
    assert pad_left > 0 and pad_top > 0  # room for the Y labels and the X labels
    for index, cell in enumerate(cells):
        col, row = index % 3, index // 3
        placed = grid.crop((pad_left + col * SIZE, pad_top + row * SIZE, pad_left + (col + 1) * SIZE,
                            pad_top + (row + 1) * SIZE))
        assert ImageChops.difference(placed, cell.convert("RGB")).getbbox() is None, f"cell {index} misplaced"
        assert f"Seed: {11 + col}," in result.infotexts[1 + index]
        assert f"Steps: {1 + row}," in result.infotexts[1 + index]
    # The labels are drawn: ink above each column and left of each row.
    for col in range(3):
        assert differs_from_white(grid, (pad_left + col * SIZE, 0, pad_left + (col + 1) * SIZE, pad_top))
    for row in range(2):
        assert differs_from_white(grid, (0, pad_top + row * SIZE, pad_left, pad_top + (row + 1) * SIZE))
    assert "X Type: Seed" in result.infotexts[0] and "Y Type: Steps" in result.infotexts[0]
    assert "Y Values: 1-2" in result.infotexts[0]


def test_xyz_checkpoint_prompt_sr_and_z_axis(state):
    params = Txt2ImgParams(prompt="a fox in snow", width=SIZE, height=SIZE, steps=1, seed=4)
    args = script_args(state, "X/Y/Z plot", x_type="Prompt S/R", x_values='fox, "cat, black"', y_type="Clip skip",
                       y_values="1, 2", z_type="Checkpoint name", z_values="tiny, tiny2", csv_mode=True,
                       include_lone_images=True, include_sub_grids=True)
    result = run(state, params, args)
    assert len(result.images) == 1 + 2 + 8  # the Z grid, one grid per checkpoint, the images
    z_grid, sub_grids = result.images[0], result.images[1:3]
    assert z_grid.width >= 2 * sub_grids[0].width and z_grid.height > sub_grids[0].height  # Z labels on top
    texts = result.infotexts[3:]  # X fastest, then Y, then Z
    assert texts[0].startswith("a fox in snow") and texts[1].startswith("a cat, black in snow")
    assert "Clip skip: " not in texts[0] and "Clip skip: 2," in texts[2]
    assert all("Model: tiny," in text for text in texts[:4]) and all("Model: tiny2," in text for text in texts[4:])
    assert "Z Type: Checkpoint name" in result.infotexts[0]


def test_xyz_without_legend_and_sub_images(state):
    params = Txt2ImgParams(prompt="a fox", width=SIZE, height=SIZE, steps=1, seed=5)
    args = script_args(state, "X/Y/Z plot", x_type="CFG Scale", x_values="3, 9", y_type="Nothing", y_values="",
                       draw_legend=False, include_lone_images=False)
    result = run(state, params, args)
    assert len(result.images) == 1
    assert result.images[0].size == (2 * SIZE, SIZE)  # no legend: no margins
    assert "CFG scale: 3" in result.infotexts[0]
    args = script_args(state, "X/Y/Z plot", x_type="CFG Scale", x_values="3, 9", y_type="Nothing", y_values="")
    labelled = run(state, params, args).images[0]
    assert labelled.width == 2 * SIZE and labelled.height > SIZE  # labels on top; Y "Nothing" takes no room


def test_xyz_refuses_unknown_values(state):
    params = Txt2ImgParams(prompt="a fox", width=SIZE, height=SIZE, steps=1)
    args = script_args(state, "X/Y/Z plot", x_type="Sampler", x_values="Euler, Not a sampler", csv_mode=True)
    job = state.queue.submit("txt2img", params, "tester", script_args=args)
    job.wait(600)
    assert job.status == "failed" and "Not a sampler" in job.error


def test_prompt_matrix_makes_every_combination(state):
    params = Txt2ImgParams(prompt="a cat|red|in a hat", width=SIZE, height=SIZE, steps=1, seed=3)
    result = run(state, params, script_args(state, "Prompt matrix"))
    assert len(result.images) == 1 + 4  # the grid, then 2^2 images
    prompts = [text.split("\n")[0] for text in result.infotexts[1:]]
    assert prompts == ["a cat", "a cat, red", "a cat, in a hat", "a cat, red, in a hat"]
    assert all("Seed: 3," in text for text in result.infotexts[1:])
    grid = result.images[0]
    assert grid.width > 2 * SIZE and grid.height > 2 * SIZE  # 2x2 cells and the labels


def test_prompts_from_file_parses_options_per_line(state):
    parse = module_globals(state, "Prompts from file or textbox")["parse_prompts"]
    jobs = parse('a cat\n\n--prompt "a dog" --steps 3 --seed 7\n--negative_prompt blurry photo --width 64\n'
                 "--bogus 1\n")
    assert jobs == [{"prompt": "a cat"}, {"prompt": "a dog", "steps": 3, "seed": 7},
                    {"negative_prompt": "blurry photo", "width": 64}, {"prompt": "--bogus 1"}]


def test_prompts_from_textbox_runs_each_line(state):
    params = Txt2ImgParams(prompt="", width=SIZE, height=SIZE, steps=2, seed=9)
    text = 'a red fox\n--prompt "a blue bird" --steps 1 --cfg_scale 4'
    result = run(state, params, script_args(state, "Prompts from file or textbox", prompt_txt=text))
    assert len(result.images) == 2
    assert result.infotexts[0].startswith("a red fox") and "Steps: 2," in result.infotexts[0]
    assert result.infotexts[1].startswith("a blue bird") and "Steps: 1," in result.infotexts[1]
    assert "CFG scale: 4" in result.infotexts[1]


def test_prompts_from_textbox_writes_only_inside_the_outputs_folder(state, tmp_path):
    # A line's --outpath_samples may pick a folder under outputs/; anywhere else on the server is refused (400).
    params = Txt2ImgParams(prompt="", width=SIZE, height=SIZE, steps=1, seed=9)
    text = "--prompt a fox --outpath_samples foxes"
    result = run(state, params, script_args(state, "Prompts from file or textbox", prompt_txt=text))
    saved = list((state.flags.data_dir / "outputs" / "foxes").rglob("*.png"))
    assert len(result.images) == 1 and len(saved) == 1
    for bad in (str(tmp_path / "elsewhere"), "../../elsewhere", "/etc"):
        job = state.queue.submit("txt2img", Txt2ImgParams(prompt="", width=SIZE, height=SIZE, steps=1), "tester",
                                 script_args=script_args(state, "Prompts from file or textbox",
                                                         prompt_txt=f"--prompt a fox --outpath_samples {bad}"))
        job.wait(600)
        assert job.status == "failed" and job.bad_input and "inside the outputs folder" in job.error, bad
    assert not (tmp_path / "elsewhere").exists()
