"""A1111's `modules.shared`: opts, cmd_opts, state, sd_model, prompt_styles and friends, read
from the bound SharedState (attributes that change are looked up on each access)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from webui import compat
from .options import A1111_DEFAULTS, OptionHTML, OptionInfo, Options, options_section  # noqa: F401

opts = Options()


# A1111's folder flags and where A1111 puts them when they are not given: (base, subfolder), the base
# being the data dir or the models dir. Extensions use them as paths (tagcomplete: Path(embeddings_dir)).
FOLDER_FLAG_DEFAULTS = {
    "embeddings_dir": ("data", "embeddings"), "hypernetwork_dir": ("models", "hypernetworks"),
    "lora_dir": ("models", "Lora"), "lyco_dir_backcompat": ("models", "LyCORIS"),
    "codeformer_models_path": ("models", "Codeformer"), "gfpgan_models_path": ("models", "GFPGAN"),
    "esrgan_models_path": ("models", "ESRGAN"), "bsrgan_models_path": ("models", "BSRGAN"),
    "realesrgan_models_path": ("models", "RealESRGAN"), "scunet_models_path": ("models", "ScuNET"),
    "swinir_models_path": ("models", "SwinIR"), "ldsr_models_path": ("models", "LDSR"),
    "dat_models_path": ("models", "DAT"), "textual_inversion_templates_dir": ("data", "textual_inversion_templates"),
}


def folder_flag(flags, name: str):
    """A folder flag as an absolute path: the given one, else A1111's default under --data-dir / the models dir."""
    value = getattr(flags, name, None)
    if value is None and name in FOLDER_FLAG_DEFAULTS:
        base, sub = FOLDER_FLAG_DEFAULTS[name]
        models = getattr(flags, "models_dir", None) or Path(flags.data_dir) / "models"
        value = Path(flags.data_dir if base == "data" else models) / sub
    return str(Path(value).resolve()) if value is not None else None


class CmdOpts:
    """`shared.cmd_opts`: the parsed flags (preload.py's included); an unknown flag reads as None.
    Folder flags read as absolute paths under --data-dir when not given (FOLDER_FLAG_DEFAULTS)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        flags = compat.state().flags
        if name in FOLDER_FLAG_DEFAULTS or (name.endswith("_dir") and getattr(flags, name, None) is not None
                                            and name not in ("data_dir", "models_dir")):
            return folder_flag(flags, name)
        if hasattr(flags, name):
            return getattr(flags, name)
        if name == "webui_is_non_local":
            return bool(getattr(flags, "listen", False) or getattr(flags, "share", False)
                        or getattr(flags, "server_name", None))
        if name == "disable_extension_access":
            return bool(self.webui_is_non_local and not getattr(flags, "enable_insecure_extension_access", False))
        return None

    def __setattr__(self, name, value):
        setattr(compat.state().flags, name, value)


cmd_opts = CmdOpts()


class State:
    """`shared.state`: the running job's progress and its interrupt/skip flags."""

    job = ""
    job_no = 0
    job_count = 0
    processing_has_refined_job_count = False
    sampling_step = 0
    sampling_steps = 0
    current_latent = None
    current_image = None
    current_image_sampling_step = 0
    id_live_preview = 0
    textinfo = None
    time_start = None
    server_start = None
    skipped_flag = False

    def _job(self):
        queue = compat.state().queue if compat.bound() else None
        return queue.current() if queue is not None else None

    @property
    def interrupted(self) -> bool:
        job = self._job()
        return bool(job and job.control.interrupted)

    @property
    def skipped(self) -> bool:
        job = self._job()
        return bool(job and job.control.skipped)

    @property
    def stopping_generation(self) -> bool:
        return self.interrupted

    def interrupt(self) -> None:
        job = self._job()
        if job is not None:
            job.control.interrupted = True

    def skip(self) -> None:
        job = self._job()
        if job is not None:
            job.control.skipped = True

    def stop_generating(self) -> None:
        self.interrupt()

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0

    def begin(self, job: str = "(unknown)") -> None:
        self.job, self.job_no, self.sampling_step = job, 0, 0

    def end(self) -> None:
        self.job = ""

    def set_current_image(self) -> None:
        pass

    def assign_current_image(self, image) -> None:
        self.current_image = image

    def dict(self) -> dict:
        return {"skipped": self.skipped, "interrupted": self.interrupted, "job": self.job, "job_count": self.job_count,
                "job_timestamp": "", "job_no": self.job_no, "sampling_step": self.sampling_step,
                "sampling_steps": self.sampling_steps}


state = State()


class _Tqdm:
    """`shared.total_tqdm`: A1111's console progress bar; nothing to draw here."""

    def reset(self): pass
    def update(self): pass
    def updateTotal(self, new_total): pass  # noqa: N802 (A1111's name)
    def clear(self): pass


total_tqdm = _Tqdm()


class PromptStyle:
    def __init__(self, name: str, prompt: str, negative_prompt: str, path=None):
        self.name, self.prompt, self.negative_prompt, self.path = name, prompt, negative_prompt, path


class StyleDatabase:
    """`shared.prompt_styles`: styles.csv, read fresh on each access."""

    @property
    def styles(self) -> dict[str, PromptStyle]:
        from webui.styles import read_styles

        return {name: PromptStyle(name, s["prompt"], s["negative_prompt"])
                for name, s in read_styles(compat.state()).items()}

    def apply_styles_to_prompt(self, prompt: str, styles) -> str:
        from prompt_parser import apply_styles_to_prompt

        return apply_styles_to_prompt(prompt, [self.styles[s].prompt for s in styles if s in self.styles])

    def apply_negative_styles_to_prompt(self, prompt: str, styles) -> str:
        from prompt_parser import apply_styles_to_prompt

        return apply_styles_to_prompt(prompt, [self.styles[s].negative_prompt for s in styles if s in self.styles])

    def reload(self) -> None:
        pass


prompt_styles = StyleDatabase()
hypernetworks: dict = {}
loaded_hypernetworks: list = []
face_restorers: list = []
xformers_available = False
mem_mon = None
gradio_theme = None
settings_components: dict = {}
tab_names: list = []
hide_dirs = {"visible": True}
latent_upscale_default_mode = "Latent"
restricted_opts = {"samples_filename_pattern", "directories_filename_pattern", "outdir_samples", "outdir_txt2img_samples",
                   "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids", "outdir_txt2img_grids",
                   "outdir_save", "outdir_init_images"}


def __getattr__(name):
    """Values that follow the running WebUI: sd_model, demo, device, styles_filename, sd_upscalers,
    latent_upscale_modes."""
    if name.startswith("__"):
        raise AttributeError(name)
    if name == "sd_model":
        models = compat.state().models
        slot = getattr(models, "slot", None)
        return slot.model if slot is not None else None
    if name == "demo":
        return compat.state().demo
    if name in ("device", "weight_load_location"):
        from . import devices

        return devices.device
    if name == "styles_filename":
        from webui.styles import styles_path

        return str(styles_path(compat.state()))
    if name == "sd_upscalers":
        from .upscaler import sd_upscalers

        return sd_upscalers()
    if name == "latent_upscale_modes":  # A1111's {label: {"mode": ..., "antialias": ...}}
        from webui.generation.upscalers import LATENT_UPSCALE_MODES

        return {label: {"mode": mode, "antialias": antialias} for label, (mode, antialias) in LATENT_UPSCALE_MODES.items()}
    if name == "interrogator":  # Interrogate CLIP (webui/interrogate)
        from .interrogate import interrogator

        return interrogator
    if name in ("models_path", "data_path", "script_path", "extensions_dir", "extensions_builtin_dir"):
        from . import paths

        return getattr(paths, name)
    raise compat.missing(__name__, name)


def natural_sort_key(s, regex=re.compile("([0-9]+)")):
    return [int(text) if text.isdigit() else text.lower() for text in regex.split(s)]


def listfiles(dirname):
    filenames = [os.path.join(dirname, x) for x in sorted(os.listdir(dirname), key=natural_sort_key)
                 if not x.startswith(".")]
    return [file for file in filenames if os.path.isfile(file)]


def html_path(filename):
    return os.path.join(Path(__file__).resolve().parents[3], "html", filename)


def html(filename):
    path = html_path(filename)
    return Path(path).read_text(encoding="utf8") if os.path.exists(path) else ""


def walk_files(path, allowed_extensions=None):
    if not os.path.exists(path):
        return
    allowed = set(allowed_extensions) if allowed_extensions is not None else None
    for root, _, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is not None and os.path.splitext(filename)[1].lower() not in allowed:
                continue
            yield os.path.join(root, filename)


def refresh_checkpoints():
    compat.state().models.refresh()


def list_checkpoint_tiles(use_short=False):
    from . import sd_models

    return sd_models.checkpoint_tiles(use_short)


def reload_gradio_theme(theme_name=None):
    pass
