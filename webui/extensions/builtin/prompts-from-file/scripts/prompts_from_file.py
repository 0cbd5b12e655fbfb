"""Prompts from file or textbox: one job per line. A line is a prompt, or A1111's command-line
style options: `--prompt "a cat" --steps 10 --seed 5 --negative_prompt "blurry"`. A1111's
script, same arguments.

Written on the A1111 script API alone (`modules.*`), as any extension would be.
"""

import copy
import random
import shlex
from pathlib import Path

import gradio as gr

from modules import paths, scripts, sd_samplers
from modules.errors import InvalidInput  # ours: a value the user must change (the API answers 400)
from modules.processing import Processed, process_images
from modules.shared import state


def as_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def as_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# Option -> converter, as A1111's script accepts them.
OPTIONS = {
    "sd_model": str, "outpath_samples": str, "outpath_grids": str, "prompt_for_display": str,
    "prompt": str, "negative_prompt": str, "styles": as_list, "seed": int, "subseed_strength": float,
    "subseed": int, "seed_resize_from_h": int, "seed_resize_from_w": int, "sampler_index": int,
    "sampler_name": str, "batch_size": int, "n_iter": int, "steps": int, "cfg_scale": float, "width": int,
    "height": int, "restore_faces": as_bool, "tiling": as_bool, "do_not_save_samples": as_bool,
    "do_not_save_grid": as_bool, "scheduler": str, "denoising_strength": float,
}


def inside_outputs(name: str, value: str) -> str:
    """A line may send its images to another folder, but only one inside the outputs folder: on a shared
    server a prompt must not write files wherever the server can (A1111 takes any path)."""
    root = Path(paths.default_output_dir).resolve()
    folder = (root / value).resolve()
    if not folder.is_relative_to(root):
        raise InvalidInput(f"--{name} must name a folder inside the outputs folder, not {value!r}")
    return str(folder)


def parse_line(line: str) -> dict:
    """`--name value ...` options of one line; a value runs until the next `--name`, so an
    unquoted multi-word prompt works too."""
    tokens = shlex.split(line)
    options, pos = {}, 0
    while pos < len(tokens):
        token = tokens[pos]
        if not token.startswith("--"):
            raise ValueError(f"expected an option, found {token!r}")
        name = token[2:]
        if name not in OPTIONS:
            raise ValueError(f"unknown option --{name}")
        words = []
        while pos + 1 < len(tokens) and not tokens[pos + 1].startswith("--"):
            pos += 1
            words.append(tokens[pos])
        if not words:
            raise ValueError(f"--{name} needs a value")
        options[name] = OPTIONS[name](" ".join(words))
        pos += 1
    if "sampler_index" in options:  # A1111's old way of naming a sampler
        index = options.pop("sampler_index")
        if not 0 <= index < len(sd_samplers.samplers):
            raise ValueError(f"--sampler_index {index}: there are {len(sd_samplers.samplers)} samplers")
        options["sampler_name"] = sd_samplers.samplers[index].name
    return options


def parse_prompts(text: str) -> list[dict]:
    """One job's options per non-empty line; a line that does not parse is a plain prompt."""
    jobs = []
    for line in (line.strip() for line in (text or "").splitlines()):
        if not line:
            continue
        if line.startswith("--"):
            try:
                jobs.append(parse_line(line))
                continue
            except ValueError as error:
                print(f"Error parsing line {line} as commandline: {error}")
        jobs.append({"prompt": line})
    return jobs


def load_file(file):
    """The uploaded file's text goes into the textbox (shown as several lines)."""
    if file is None:
        return gr.update(), gr.update(), gr.update(lines=7)
    data = file if isinstance(file, bytes) else open(file, "rb").read()
    return None, data.decode("utf8", errors="ignore"), gr.update(lines=7)


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        iterate = gr.Checkbox(label="Iterate seed every line", value=False, elem_id=self.elem_id("checkbox_iterate"))
        iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                    elem_id=self.elem_id("checkbox_iterate_batch"))
        position = gr.Radio(["start", "end"], label="Insert prompts at the", value="start",
                            elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=1, elem_id=self.elem_id("prompt_txt"))
        upload = gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file"))
        upload.change(load_file, upload, [upload, prompt_txt, prompt_txt], show_progress=False)
        # A multi-line paste makes the box taller, as in A1111.
        prompt_txt.change(lambda text: gr.update(lines=7) if "\n" in (text or "") else gr.update(lines=2),
                          prompt_txt, prompt_txt, show_progress=False)
        return [iterate, iterate_batch, position, prompt_txt]

    def run(self, p, checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt: str):
        if not isinstance(prompt_txt, (str, type(None))):
            raise InvalidInput(f"the list of prompt inputs must be text, not {type(prompt_txt).__name__}")
        jobs = parse_prompts(prompt_txt)
        p.do_not_save_grid = True
        state.job_count = sum(job.get("n_iter", p.n_iter) for job in jobs)
        # Each line's images count against the server's limit per request (p.limits: --max-images), before any runs.
        most = getattr(getattr(p, "limits", None), "images", None) or 800
        wanted = sum(job.get("n_iter", p.n_iter) * job.get("batch_size", p.batch_size) for job in jobs)
        if wanted > most:
            raise InvalidInput(f"the {len(jobs)} lines ask for {wanted} images; at most {most} are allowed per request")
        if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
            p.seed = int(random.randrange(4294967294))

        images, all_prompts, infotexts, seeds = [], [], [], []
        for number, options in enumerate(jobs):
            if state.interrupted:
                break
            state.job = f"{number + 1} out of {len(jobs)}"
            job_p = copy.copy(p)
            job_p.override_settings = dict(p.override_settings or {})
            for name, value in options.items():
                if name == "sd_model":
                    job_p.override_settings["sd_model_checkpoint"] = value
                elif name in ("outpath_samples", "outpath_grids"):
                    setattr(job_p, name, inside_outputs(name, value))
                else:
                    setattr(job_p, name, value)
            for name in ("prompt", "negative_prompt"):
                if options.get(name) and getattr(p, name):
                    joined = (options[name], getattr(p, name)) if prompt_position == "start" else (getattr(p, name), options[name])
                    setattr(job_p, name, " ".join(joined))
            processed = process_images(job_p)
            start = processed.index_of_first_image
            images += processed.images[start:]
            infotexts += processed.infotexts[start:]
            all_prompts += processed.all_prompts
            seeds += processed.all_seeds
            if checkbox_iterate:
                p.seed = p.seed + p.batch_size * p.n_iter
        return Processed(p, images, p.seed, "", all_prompts=all_prompts, all_seeds=seeds, infotexts=infotexts)
