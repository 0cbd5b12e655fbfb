"""Face restoration: find faces, run GFPGAN or CodeFormer on each face crop, paste it back feathered.

Pixels outside the face crops never change. Model files live in A1111's folders (models/GFPGAN,
models/Codeformer); faces are found offline with OpenCV 4's own frontal-face Haar cascade (or a cascade put in
models/facedetection), or with a YuNet ONNX file in models/facedetection (OpenCV 5 dropped the cascades). With a piece missing, the error names the folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from .model_files import FACE_FOLDERS, model_files_in
from .networks import ModelFileError, gfpgan_network, load_network
from .tiling import to_image, to_tensor

RESTORERS = ("CodeFormer", "GFPGAN")  # A1111's order in /sdapi/v1/face-restorers
DETECTOR_FOLDER = "facedetection"
CROP_MARGIN = 0.4  # context around a detected box, as a share of its size: the networks expect whole heads

Box = tuple[int, int, int, int]  # x, y, width, height
Detector = Callable[[Image.Image], list[Box]]
_lock = threading.Lock()


class FaceRestorationUnavailable(RuntimeError):
    """What is missing (a model file, a detector), naming the folder it goes in."""


def restorer_file(models_dir: Path, name: str) -> Path:
    folder = FACE_FOLDERS.get(name)
    if folder is None:
        raise FaceRestorationUnavailable(f"unknown face restorer {name!r}; there are: {', '.join(RESTORERS)}")
    files = model_files_in(Path(models_dir) / folder)
    if not files:
        raise FaceRestorationUnavailable(f"{name}: no model file; put one (.pth or .safetensors) in models/{folder}")
    return files[0]


def available_restorers(models_dir: Path) -> list[str]:
    return [name for name in RESTORERS if model_files_in(Path(models_dir) / FACE_FOLDERS[name])]


def choose_restorer(models_dir: Path, wanted: str = "") -> str:
    """`wanted` if set, else the first restorer whose model file is present (A1111's setting
    face_restoration_model; its default, CodeFormer, is often the one without a file)."""
    if wanted:
        restorer_file(models_dir, wanted)
        return wanted
    found = available_restorers(models_dir)
    if not found:
        raise FaceRestorationUnavailable("face restoration needs a model file: put GFPGANv1.4.pth in models/GFPGAN "
                                         "or codeformer-v0.1.0.pth in models/Codeformer")
    return found[0]


def default_detector(models_dir: Path) -> Detector:
    """OpenCV's frontal-face Haar cascade (shipped with OpenCV 4, or put in models/facedetection), else a YuNet
    ONNX file in models/facedetection."""
    import cv2

    folder = Path(models_dir) / DETECTOR_FOLDER
    shipped = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "/nonexistent")
    cascades = sorted(folder.glob("*.xml")) if folder.is_dir() else []
    cascades += [p for p in [shipped / "haarcascade_frontalface_default.xml"] if p.is_file()]
    if cascades and hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 has neither the class nor the files
        classifier = cv2.CascadeClassifier(str(cascades[0]))
        if classifier.empty():
            raise FaceRestorationUnavailable(f"{cascades[0].name} is not an OpenCV cascade (models/{DETECTOR_FOLDER})")

        def haar(image: Image.Image) -> list[Box]:
            gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
            found = classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
            return [tuple(int(v) for v in box) for box in found]
        return haar
    onnx = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if onnx and hasattr(cv2, "FaceDetectorYN"):
        def yunet(image: Image.Image) -> list[Box]:
            detector = cv2.FaceDetectorYN.create(str(onnx[0]), "", image.size)
            _, faces = detector.detect(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR))
            return [tuple(int(v) for v in face[:4]) for face in (faces if faces is not None else [])]
        return yunet
    raise FaceRestorationUnavailable(
        f"no face detector: OpenCV {cv2.__version__} has no Haar cascades (OpenCV 4 does); put a YuNet "
        f"face_detection_yunet*.onnx (or, with OpenCV 4, a Haar cascade .xml) in models/{DETECTOR_FOLDER}")


@dataclass(frozen=True)
class FaceRestoration:
    """Restore the faces of an image with one restorer (the txt2img/img2img `restore_faces` step)."""

    name: str
    models_dir: Path
    codeformer_weight: float = 0.5
    device: str = "cpu"

    def __call__(self, image: Image.Image, detector: Detector | None = None) -> Image.Image:
        return restore_faces(image, self.name, self.models_dir, codeformer_weight=self.codeformer_weight,
                             device=self.device, detector=detector)


def restore_faces(image: Image.Image, name: str, models_dir: Path, visibility: float = 1.0,
                  codeformer_weight: float = 0.5, device: str = "cpu", detector: Detector | None = None) -> Image.Image:
    """`image` with every detected face restored by `name`, blended in at `visibility` (0..1)."""
    if visibility <= 0:
        return image
    network = _network(name, restorer_file(models_dir, name), device)
    detect = detector or default_detector(models_dir)
    original = image.convert("RGB")
    result = original.copy()
    with _lock:
        for box in detect(original):
            crop = _crop_box(box, original.size)
            face = original.crop(crop)
            restored = network(face, codeformer_weight).resize(face.size, Image.Resampling.LANCZOS)
            result.paste(restored, crop[:2], _feather_mask(face.size))
    return result if visibility >= 1 else Image.blend(original, result, visibility)


def _crop_box(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square around the box with some context, inside the image: (left, top, right, bottom)."""
    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * CROP_MARGIN))
    cx, cy = x + w // 2, y + h // 2
    left, top = max(0, cx - side // 2), max(0, cy - side // 2)
    return left, top, min(size[0], left + side), min(size[1], top + side)


def _feather_mask(size: tuple[int, int]) -> Image.Image:
    """Opaque in the middle, fading to nothing at the crop's edges: no seam where the face is pasted."""
    border = max(1, min(size) // 10)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((border, border, size[0] - 1 - border, size[1] - 1 - border), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(border / 2))


def _network(name: str, path: Path, device: str) -> Callable[[Image.Image, float], Image.Image]:
    """(face crop, codeformer weight) -> restored crop, at the network's own face size."""
    if name == "GFPGAN":
        model = gfpgan_network(path, device)
        size = model.out_size if hasattr(model, "out_size") else 2 ** model.log_size
        run = lambda x, weight: model(x, return_rgb=False)[0]  # noqa: E731
    else:
        model, size = _codeformer(path, device), 512
        run = lambda x, weight: model(x, weight=weight, adain=True)[0]  # noqa: E731

    @torch.inference_mode()
    def restore(face: Image.Image, weight: float) -> Image.Image:
        dtype = next(model.parameters()).dtype
        x = to_tensor(face.resize((size, size), Image.Resampling.BICUBIC), device, dtype) * 2 - 1  # [-1, 1]
        return to_image((run(x, weight).float() + 1) / 2)
    return restore


def _codeformer(path: Path, device: str) -> torch.nn.Module:
    """CodeFormer's network comes from spandrel_extra_arches (its licence keeps it out of spandrel itself)."""
    try:
        from spandrel import MAIN_REGISTRY
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        raise FaceRestorationUnavailable(
            "CodeFormer needs the package spandrel_extra_arches (CodeFormer's non-commercial licence keeps it out "
            "of spandrel); install it, or use GFPGAN (models/GFPGAN)") from None
    if not any(arch.id == "CodeFormer" for arch in MAIN_REGISTRY.architectures()):
        MAIN_REGISTRY.add(*EXTRA_REGISTRY)
    try:
        return load_network(path, device).model
    except ModelFileError as error:
        raise FaceRestorationUnavailable(str(error)) from error
