"""Prompt matrix: "a cat|in a hat|on a mat" makes one image for every combination of the
optional parts after the first "|" (2^n images), then a grid labelled with the parts that are
on (black) and off (grey, struck through) in each cell. A1111's script, same arguments.

Written on the A1111 script API alone (`modules.*`), as any extension would be.
"""

import math

import gradio as gr

from modules import images, scripts, shared
from modules.errors import InvalidInput  # ours: a value the user must change (the API answers 400)
from modules.processing import process_images


def matrix_prompts(prompt: str, put_at_start: bool, delimiter: str) -> tuple[list[str], list[str]]:
    """(the "|"-separated parts, one prompt per combination). Combination n uses optional part i
    when bit i of n is set, so the first parts vary fastest (along the grid's columns)."""
    parts = prompt.split("|")
    joiner = ", " if delimiter == "comma" else " "
    prompts = []
    for combination in range(2 ** (len(parts) - 1)):
        chosen = [text.strip().strip(",") for i, text in enumerate(parts[1:]) if combination & (1 << i)]
        ordered = chosen + [parts[0]] if put_at_start else [parts[0]] + chosen
        prompts.append(joiner.join(text.strip().strip(",") for text in ordered if text.strip()))
    return parts, prompts


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def ui(self, is_img2img):
        gr.HTML("<br />")
        with gr.Row():
            with gr.Column():
                put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                           elem_id=self.elem_id("put_at_start"))
                different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False,
                                              elem_id=self.elem_id("different_seeds"))
            with gr.Column():
                prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive",
                                       elem_id=self.elem_id("prompt_type"))
                delimiter = gr.Radio(["comma", "space"], label="Select joining char", value="comma",
                                     elem_id=self.elem_id("variations_delimiter"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                        elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, delimiter, margin_size]

    def run(self, p, put_at_start, different_seeds, prompt_type, delimiter, margin_size):
        if prompt_type not in ("positive", "negative"):
            raise ValueError(f"Unknown prompt type {prompt_type}")
        if delimiter not in ("comma", "space"):
            raise ValueError(f"Unknown joining char {delimiter}")
        original = p.prompt if prompt_type == "positive" else p.negative_prompt
        original = original[0] if isinstance(original, list) else original
        # 2^(parts - 1) images: checked against the server's limit per request (p.limits: --max-images) before
        # the prompts are made, so that "a|b|c|..." with many parts cannot stall the server.
        most = getattr(getattr(p, "limits", None), "images", None) or 800
        optional = original.count("|")
        if 2 ** optional > most:
            raise InvalidInput(f"Prompt matrix: {optional} optional parts make 2^{optional} images; at most {most} "
                               f"are allowed per request")
        parts, prompts = matrix_prompts(original, put_at_start, delimiter)

        p.n_iter = math.ceil(len(prompts) / p.batch_size)
        p.do_not_save_grid = True
        print(f"Prompt matrix will create {len(prompts)} images using a total of {p.n_iter} batches.")
        if prompt_type == "positive":
            p.prompt = prompts
        else:
            p.negative_prompt = prompts
        seed = int(p.seed) if p.seed not in (None, "", -1) else None
        if seed is None:
            from modules import processing
            processing.fix_seed(p)
            seed = int(p.seed)
        p.seed = [seed + (i if different_seeds else 0) for i in range(len(prompts))]
        p.prompt_for_display = original

        processed = process_images(p)
        start = processed.index_of_first_image
        shown = processed.images[start:start + len(prompts)]
        grid = images.image_grid(shown, rows=1 << ((len(parts) - 1) // 2))
        grid = images.draw_prompt_matrix(grid, shown[0].width, shown[0].height, parts, int(margin_size))
        processed.images.insert(start, grid)
        processed.index_of_first_image = start + 1
        processed.infotexts.insert(start, processed.infotexts[start])
        if getattr(shared.opts, "grid_save", True):
            images.save_image(grid, p.outpath_grids, "prompt_matrix", extension=getattr(shared.opts, "grid_format", "png"),
                              prompt=original, seed=processed.seed, grid=True, p=p)
        return processed
