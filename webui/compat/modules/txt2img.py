"""A1111's `modules.txt2img`: the txt2img tab's entry point, for extensions that replay the UI's call
(agent-scheduler and API extensions). The job goes through our queue like any other.

A1111 1.10 reads steps, sampler and seed from its built-in Sampler/Seed scripts' arguments; this WebUI has no
such scripts, so the arguments after `override_settings_texts` are our txt2img scripts' (index 0 = the selected
script) and steps, sampler and seed are p's defaults unless a script sets them. `id_task` is not the job's id
(the queue names its jobs; a UI id could collide), and the call waits for the job as A1111's does.
"""

from __future__ import annotations

from webui import compat
from webui.compat import ui_calls
from webui.generation.params import SAME_SAMPLER, SAME_SCHEDULER

FIELDS = ("prompt", "negative_prompt", "prompt_styles", "n_iter", "batch_size", "cfg_scale", "height", "width",
          "enable_hr", "denoising_strength", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x",
          "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt",
          "override_settings_texts")


def txt2img_create_processing(id_task: str, request, *args, force_enable_hr: bool = False):
    """A1111's p for the txt2img tab's fields (script arguments are set by `txt2img`)."""
    from .processing import StableDiffusionProcessingTxt2Img

    fields, _ = ui_calls.named("txt2img", FIELDS, args)
    ui_calls.check_unsupported("txt2img", fields)
    if fields["hr_checkpoint_name"] not in (None, "", "Use same checkpoint"):
        raise ValueError(f"txt2img: a hires checkpoint ({fields['hr_checkpoint_name']!r}) is not supported here")
    prompt, negative = ui_calls.styled(fields)
    enable_hr = bool(fields["enable_hr"]) or force_enable_hr
    return StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt=negative, styles=list(fields["prompt_styles"] or []),
        n_iter=int(fields["n_iter"]), batch_size=int(fields["batch_size"]), cfg_scale=float(fields["cfg_scale"]),
        width=int(fields["width"]), height=int(fields["height"]), enable_hr=enable_hr,
        denoising_strength=fields["denoising_strength"] if enable_hr else None, hr_scale=fields["hr_scale"],
        hr_upscaler=fields["hr_upscaler"], hr_second_pass_steps=int(fields["hr_second_pass_steps"] or 0),
        hr_resize_x=int(fields["hr_resize_x"] or 0), hr_resize_y=int(fields["hr_resize_y"] or 0),
        hr_sampler_name="" if fields["hr_sampler_name"] in (None, SAME_SAMPLER) else fields["hr_sampler_name"],
        hr_scheduler="" if fields["hr_scheduler"] in (None, SAME_SCHEDULER) else fields["hr_scheduler"],
        hr_prompt=fields["hr_prompt"] or "", hr_negative_prompt=fields["hr_negative_prompt"] or "")


def txt2img(id_task: str, request, *args):
    """Generate as the txt2img tab does: (images, generation_info_js, html_info, html_log)."""
    p = txt2img_create_processing(id_task, request, *args)
    p.user = getattr(request, "username", None)
    return ui_calls.run(p, "txt2img", list(args[len(FIELDS):]))


__getattr__ = compat.report_missing_names(__name__)
