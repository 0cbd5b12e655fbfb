"""A1111's `modules.img2img`: the img2img tab's entry point, for extensions that replay the UI's call.
The job goes through our queue like any other.

Modes as A1111's tabs: 0 img2img, 1 sketch, 2 inpaint, 4 inpaint upload. Inpaint sketch (3) and batch (5)
raise: they need the browser's colour sketch and server folders. As with `modules.txt2img`, the arguments after
A1111's fields are our img2img scripts' and steps, sampler and seed are p's defaults unless a script sets them.
"""

from __future__ import annotations

from webui import compat
from webui.compat import ui_calls

FIELDS = ("mode", "prompt", "negative_prompt", "prompt_styles", "init_img", "sketch", "init_img_with_mask",
          "inpaint_color_sketch", "inpaint_color_sketch_orig", "init_img_inpaint", "init_mask_inpaint", "mask_blur",
          "mask_alpha", "inpainting_fill", "n_iter", "batch_size", "cfg_scale", "image_cfg_scale",
          "denoising_strength", "selected_scale_tab", "height", "width", "scale_by", "resize_mode",
          "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert", "img2img_batch_input_dir",
          "img2img_batch_output_dir", "img2img_batch_inpaint_mask_dir", "override_settings_texts",
          "img2img_batch_use_png_info", "img2img_batch_png_info_props", "img2img_batch_png_info_dir",
          "img2img_batch_source_type", "img2img_batch_upload")
MODES = {0: "img2img", 1: "sketch", 2: "inpaint", 3: "inpaint sketch", 4: "inpaint upload", 5: "batch"}


def _image_and_mask(fields: dict):
    from .processing import create_binary_mask

    mode = fields["mode"]
    if mode == 0:
        image, mask = fields["init_img"], None
    elif mode == 1:
        image, mask = fields["sketch"], None
    elif mode == 2:
        drawn = fields["init_img_with_mask"] or {}
        image, mask = drawn.get("image"), drawn.get("mask")
        mask = create_binary_mask(mask) if mask is not None else None
    elif mode == 4:
        image, mask = fields["init_img_inpaint"], fields["init_mask_inpaint"]
    else:
        raise ValueError(f"img2img: mode {mode} ({MODES.get(mode, 'unknown')}) is not supported through "
                         "modules.img2img; use 0 img2img, 1 sketch, 2 inpaint or 4 inpaint upload")
    if image is None:
        raise ValueError(f"img2img: mode {mode} ({MODES[mode]}) needs an image and none was given")
    return image.convert("RGB"), mask


def img2img(id_task: str, request, *args):
    """Generate as the img2img tab does: (images, generation_info_js, html_info, html_log)."""
    from .processing import StableDiffusionProcessingImg2Img

    fields, script_args = ui_calls.named("img2img", FIELDS, args)
    ui_calls.check_unsupported("img2img", fields)
    image, mask = _image_and_mask(fields)
    width, height = int(fields["width"]), int(fields["height"])
    if fields["selected_scale_tab"] == 1:  # "Resize by": the size follows the image
        width, height = int(image.width * float(fields["scale_by"])), int(image.height * float(fields["scale_by"]))
    prompt, negative = ui_calls.styled(fields)
    p = StableDiffusionProcessingImg2Img(
        prompt=prompt, negative_prompt=negative, styles=list(fields["prompt_styles"] or []), init_images=[image],
        mask=mask, mask_blur=int(fields["mask_blur"]), inpainting_fill=int(fields["inpainting_fill"]),
        n_iter=int(fields["n_iter"]), batch_size=int(fields["batch_size"]), cfg_scale=float(fields["cfg_scale"]),
        denoising_strength=float(fields["denoising_strength"]), width=width, height=height,
        resize_mode=int(fields["resize_mode"]), inpaint_full_res=bool(fields["inpaint_full_res"]),
        inpaint_full_res_padding=int(fields["inpaint_full_res_padding"]),
        inpainting_mask_invert=int(fields["inpainting_mask_invert"]))
    p.user = getattr(request, "username", None)
    return ui_calls.run(p, "img2img", script_args)


__getattr__ = compat.report_missing_names(__name__)
