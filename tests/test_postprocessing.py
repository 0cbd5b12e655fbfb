"""Model upscalers, face restoration and the Extras pipeline (webui/postprocessing) on tiny real model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from postprocessing_models import cartoon_face, tiny_esrgan, tiny_gfpgan
from webui.generation.upscalers import find_upscaler, upscaler_names
from webui.postprocessing.extras import ExtrasError, ExtrasParams, run_extras
from webui.postprocessing.face_restoration import (
    FaceRestorationUnavailable, available_restorers, default_detector, restore_faces,
)
from webui.postprocessing.model_files import missing_defaults, upscaler_files
from webui.postprocessing.model_upscalers import refresh_model_upscalers
from webui.postprocessing.tiling import run_tiled


def _picture(width=24, height=16) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def models(tmp_path):
    yield tmp_path / "models"
    refresh_model_upscalers(tmp_path / "nothing")  # leave the shared registry as it was


def test_files_are_found_with_a1111_names(models):
    tiny_esrgan(models / "ESRGAN" / "4x-UltraSharp.pth")
    tiny_esrgan(models / "RealESRGAN" / "RealESRGAN_x4plus.safetensors", safetensors=True)
    found = {f.name: f for f in upscaler_files(models)}
    assert set(found) == {"4x-UltraSharp", "R-ESRGAN 4x+"}
    assert found["4x-UltraSharp"].scale == 4 and found["R-ESRGAN 4x+"].folder == "RealESRGAN"
    notes = missing_defaults(models)
    assert "R-ESRGAN 4x+: put RealESRGAN_x4plus.pth in models/RealESRGAN" not in notes
    assert "SwinIR 4x: put SwinIR_4x.pth in models/SwinIR" in notes


def test_a_model_upscaler_is_registered_and_upscales_4x(models):
    tiny_esrgan(models / "ESRGAN" / "4x-Tiny.pth")
    refresh_model_upscalers(models)
    assert "4x-Tiny" in upscaler_names()
    image = _picture()
    out = find_upscaler("4x-Tiny").upscale(image, 96, 64)
    assert out.size == (96, 64)
    lanczos = image.resize((96, 64), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(lanczos, dtype=int)).mean() > 5  # the network ran
    refresh_model_upscalers(models / "empty")
    assert "4x-Tiny" not in upscaler_names()


def test_tiles_overlap_and_match_the_whole_image_for_a_pixelwise_network():
    image = torch.rand(1, 3, 50, 70)
    network = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    tiled = run_tiled(network, image, 2, tile=16, overlap=4)
    assert tiled.shape == (1, 3, 100, 140)
    assert torch.allclose(tiled, network(image), atol=1e-5)


def test_a_pickled_file_with_code_is_refused(models):
    import pickle

    path = models / "ESRGAN" / "evil.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(Image.Image))  # a global: weights_only loading refuses it
    refresh_model_upscalers(models)
    with pytest.raises(Exception, match="evil.pth|Unsupported|weights_only|global"):
        find_upscaler("evil").upscale(_picture(), 96, 64)


def test_restoration_changes_only_the_face_box(models):
    tiny_gfpgan(models / "GFPGAN" / "GFPGANv1.4.pth")
    assert available_restorers(models) == ["GFPGAN"]
    image = _picture(96, 96)
    box = (40, 30, 20, 20)
    out = restore_faces(image, "GFPGAN", models, detector=lambda img: [box])
    before, after = np.asarray(image, dtype=int), np.asarray(out, dtype=int)
    changed = np.argwhere((before != after).any(axis=2))
    assert len(changed) > 100
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert 20 <= left and right < 70 and 20 <= top and bottom < 60  # the face crop (box plus its margin)
    half = restore_faces(image, "GFPGAN", models, visibility=0.5, detector=lambda img: [box])
    assert 0 < np.abs(np.asarray(half, dtype=int) - before).sum() < np.abs(after - before).sum()


def _opencv_has_cascades() -> bool:
    import cv2

    shipped = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "/nonexistent")
    return hasattr(cv2, "CascadeClassifier") and (shipped / "haarcascade_frontalface_default.xml").is_file()


def test_missing_restorer_and_detector_name_their_folders(models):
    with pytest.raises(FaceRestorationUnavailable, match="models/GFPGAN"):
        restore_faces(_picture(), "GFPGAN", models, detector=lambda img: [])
    if not _opencv_has_cascades():  # OpenCV 5: pyproject asks for 4, this environment may have 5
        with pytest.raises(FaceRestorationUnavailable, match="models/facedetection"):
            default_detector(models)
    else:
        assert default_detector(models)(_picture()) == []  # noise has no face


def test_opencv_finds_a_drawn_face_and_only_its_crop_is_restored(models):
    tiny_gfpgan(models / "GFPGAN" / "GFPGANv1.4.pth")
    face = cartoon_face()
    if not _opencv_has_cascades():
        with pytest.raises(FaceRestorationUnavailable, match="models/facedetection"):
            restore_faces(face, "GFPGAN", models)
        return
    boxes = default_detector(models)(face)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 15 < x < 45 and 15 < y < 45 and 90 < w < 140  # the oval drawn at (40, 25)-(120, 135)
    out = np.asarray(restore_faces(face, "GFPGAN", models), dtype=int)
    changed = np.argwhere((out != np.asarray(face, dtype=int)).any(axis=2))
    assert len(changed) > 1000
    grown = int(max(w, h) * 0.4) + 2  # the crop's margin around the box
    assert changed.min(axis=0)[1] >= x - grown and changed.max(axis=0)[1] <= x + w + grown


def test_extras_pipeline_by_factor_to_size_and_crop(models):
    tiny_esrgan(models / "ESRGAN" / "4x-Tiny.pth")
    refresh_model_upscalers(models)
    image = _picture()
    by_factor = run_extras(ExtrasParams(upscaler_1="4x-Tiny", upscaling_resize=4), image, models)
    assert by_factor.image.size == (96, 64)
    assert by_factor.info == {"Postprocess upscale by": 4, "Postprocess upscaler": "4x-Tiny"}
    to_size = run_extras(ExtrasParams(resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=40,
                                      upscaler_1="Lanczos", upscaler_2="4x-Tiny", extras_upscaler_2_visibility=0.5),
                         image, models)
    assert to_size.image.size == (40, 40) and to_size.info["Postprocess crop to"] == "40x40"
    uncropped = run_extras(ExtrasParams(resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=40,
                                        upscaling_crop=False, upscaler_1="Lanczos"), image, models)
    assert uncropped.image.size == (60, 40)
    with pytest.raises(ExtrasError, match="upscaler_1"):
        run_extras(ExtrasParams(upscaler_1="No such"), image, models)
    with pytest.raises(ExtrasError, match="gfpgan_visibility"):
        run_extras(ExtrasParams(gfpgan_visibility=2), image, models)



def test_model_upscalers_are_a1111_upscaler_objects_for_extensions(models):
    from webui.compat.modules.upscaler import sd_upscalers

    path = tiny_esrgan(models / "ESRGAN" / "4x-Tiny.pth")
    refresh_model_upscalers(models)
    entry = next(u for u in sd_upscalers() if u.name == "4x-Tiny")
    assert entry.data_path == str(path) and entry.scale == 4
    assert entry.scaler.upscale(_picture(), 2, entry.data_path).size == (48, 32)  # A1111: multiples of 8


def test_extras_tab_batch_from_a_folder(models, tmp_path):
    from webui.flags import parse_flags
    from webui.state import SharedState
    from webui.ui.extras import MODES, run

    tiny_esrgan(models / "ESRGAN" / "4x-Tiny.pth")
    refresh_model_upscalers(models)
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    _picture().save(source / "a.png")
    _picture(16, 16).save(source / "b.jpg")
    (source / "notes.txt").write_text("not an image")
    args = (None, None, str(source), str(target), True, "by", 2.0, 512, 512, True, "4x-Tiny", "None", 0.0, 0.0, 0.0, 0.0)
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    shown, info = run(state, MODES[2], *args)
    assert [image.size for image in shown] == [(48, 32), (32, 32)]
    assert sorted(Image.open(p).size for p in target.glob("*.png")) == [(32, 32), (48, 32)]
    assert "Postprocess upscaler: 4x-Tiny" in info
    hidden = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--hide-ui-dir-config"]))
    shown, info = run(hidden, MODES[2], *args)
    assert shown == [] and "--hide-ui-dir-config" in info
