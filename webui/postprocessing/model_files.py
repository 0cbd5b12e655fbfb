"""Where upscaler and face-restoration model files live (A1111's folders) and the names A1111 gives them.

Nothing is downloaded: A1111's default entries (R-ESRGAN 4x+, SwinIR 4x, ...) are listed only when their
file is in its folder; `missing_defaults` says where each would go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors")

# A1111's upscaler folders under models/, in the order its Extras tab lists them.
UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "ScuNET")
FACE_FOLDERS = {"GFPGAN": "GFPGAN", "CodeFormer": "Codeformer"}

# A1111's names for the files its default entries would download: folder -> file name -> shown name.
KNOWN_FILES: dict[str, dict[str, str]] = {
    "ESRGAN": {"ESRGAN_4x.pth": "ESRGAN_4x"},
    "RealESRGAN": {
        "realesr-general-x4v3.pth": "R-ESRGAN General 4xV3",
        "realesr-general-wdn-x4v3.pth": "R-ESRGAN General WDN 4xV3",
        "realesr-animevideov3.pth": "R-ESRGAN AnimeVideo",
        "RealESRGAN_x4plus.pth": "R-ESRGAN 4x+",
        "RealESRGAN_x4plus_anime_6B.pth": "R-ESRGAN 4x+ Anime6B",
        "RealESRGAN_x2plus.pth": "R-ESRGAN 2x+",
    },
    "SwinIR": {"SwinIR_4x.pth": "SwinIR 4x", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth": "SwinIR 4x"},
    "DAT": {"DAT_x2.pth": "DAT x2", "DAT_x3.pth": "DAT x3", "DAT_x4.pth": "DAT x4"},
    "ScuNET": {"ScuNET.pth": "ScuNET GAN", "scunet_color_real_gan.pth": "ScuNET GAN",
               "scunet_color_real_psnr.pth": "ScuNET PSNR"},
}


@dataclass(frozen=True)
class ModelFile:
    """One upscaler model file: A1111's name for it, its path, its folder, and its scale (guessed from the
    name until the model is loaded: "4x", "x2"; A1111 guesses 4)."""

    name: str
    path: Path
    folder: str
    scale: int


def scale_from_name(name: str, default: int = 4) -> int:
    match = re.search(r"(?:^|[^a-z0-9])(\d)x|x(\d)(?:$|[^0-9])", name.lower())
    return int(match.group(1) or match.group(2)) if match else default


def model_files_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS)


def upscaler_files(models_dir: Path) -> list[ModelFile]:
    """Every upscaler file in A1111's folders, named as A1111 names it (a known file's name, else its stem)."""
    found: list[ModelFile] = []
    taken: set[str] = set()
    for folder in UPSCALER_FOLDERS:
        known = {Path(file).stem: name for file, name in KNOWN_FILES.get(folder, {}).items()}
        for path in model_files_in(models_dir / folder):
            name = known.get(path.stem, path.stem)  # RealESRGAN_x4plus.safetensors is "R-ESRGAN 4x+" too
            if name.lower() in taken:  # two files would share a name: the second shows its folder too
                name = f"{name} ({folder})"
            taken.add(name.lower())
            found.append(ModelFile(name, path, folder, scale_from_name(path.stem)))
    return found


def missing_defaults(models_dir: Path) -> list[str]:
    """One note per A1111 default entry whose file is absent: where to put the file for it to appear."""
    notes = []
    for folder, files in KNOWN_FILES.items():
        present = {p.stem + ".pth" for p in model_files_in(models_dir / folder)}
        for file_name, name in files.items():
            if file_name not in present and not any(f in present for f, n in files.items() if n == name):
                notes.append(f"{name}: put {file_name} in models/{folder}")
    return list(dict.fromkeys(notes))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A model file's tensors, never unpickling code: safetensors, or torch.load with weights_only.
    Training checkpoints keep the weights under "params_ema" or "params" (BasicSR's layout)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("params_ema", "params", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} holds no model weights")
    return state
