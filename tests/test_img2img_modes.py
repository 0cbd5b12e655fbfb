"""The img2img tab's modes turn what the editors hold into A1111's init image and mask: Inpaint sketch's
painted colours become the init image where they were painted, and that is the mask."""

import numpy as np
from PIL import Image

from webui.ui.img2img import MODES, init_image_and_mask, sketched_inpaint

GRAY, RED = (90, 90, 90), (220, 30, 30)


def sketch_editor(size: int = 32, box=(8, 8, 16, 16)) -> dict:
    """What Gradio's ImageEditor hands over: the image, a layer with a red patch painted on it, the composite."""
    background = Image.new("RGB", (size, size), GRAY)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (*RED, 255)), box[:2])
    composite = background.copy()
    composite.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), RED), box[:2])
    return {"background": background, "layers": [layer], "composite": composite}


def test_painted_colours_become_the_init_image_and_the_mask():
    image, mask = sketched_inpaint(sketch_editor())
    pixels, mask = np.asarray(image), np.asarray(mask)
    assert (pixels[8:16, 8:16] == RED).all() and mask[8:16, 8:16].min() == 255
    outside = np.ones(mask.shape, bool)
    outside[8:16, 8:16] = False
    assert (pixels[outside] == GRAY).all() and mask[outside].max() == 0


def test_mask_transparency_dims_the_mask_and_the_painted_colours():
    image, mask = sketched_inpaint(sketch_editor(), mask_alpha=50)
    assert 120 <= np.asarray(mask)[12, 12] <= 135  # half as strong
    blended = np.asarray(image)[12, 12].astype(int)
    assert all(min(g, r) < b < max(g, r) for g, r, b in zip(GRAY, RED, blended)), blended


def test_mask_blur_softens_the_edge_and_leaves_far_pixels_alone():
    image, mask = sketched_inpaint(sketch_editor(), mask_blur=2)
    pixels = np.asarray(image)
    assert (pixels[24:, 24:] == GRAY).all()  # far from the patch: the original, exactly
    edge = pixels[12, 7].astype(int)  # just outside the patch: part painted colour
    assert edge[0] > GRAY[0] and edge[1] < GRAY[1]
    assert np.asarray(mask)[12, 12] == 255  # the mask itself stays sharp (processing blurs it again)


def test_inpaint_sketch_is_a1111s_mode_3_and_reads_its_own_editor():
    assert [kind for _, kind in MODES] == ["img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload"]
    images = {"inpaint_sketch": ("editor", "alpha", "blur")}
    image, mask = init_image_and_mask(3, {"editor": sketch_editor(), "alpha": 0, "blur": 0}, images)
    assert np.asarray(image)[12, 12].tolist() == list(RED) and np.asarray(mask)[12, 12] == 255
    assert init_image_and_mask(3, {"editor": None, "alpha": 0, "blur": 4}, images) == (None, None)


def test_the_runs_last_update_holds_the_result_and_the_generate_button():
    # Gradio's closing message repeats only a generator's last update: the gallery's images must be in it,
    # not in an earlier update followed by one of skips (the gallery came up empty under load).
    import gradio as gr

    from webui.ui.txt2img import followed

    image = Image.new("RGB", (8, 8))
    progress = ("<div>50%</div>", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
    result = ("", gr.update(value=None, visible=False), [image], "<div class='infotext'>x</div>", {"images": [image]},
              (1, 2))
    updates = list(followed(iter([progress, result])))
    assert len(updates) == 2
    last = updates[-1]
    assert last[2]["value"] == [image] and last[3] == result[3] and last[6] == 0  # gallery, infotext, selected
    assert [button["visible"] for button in last[7:]] == [True, False, False]  # Generate back, Interrupt/Skip gone

    def failing():
        yield progress
        raise RuntimeError("worker lost")

    last = list(followed(failing()))[-1]
    assert "worker lost" in last[0] and last[7]["visible"] is True
