"""The one explicit shared state of a running WebUI: flags, settings, the model, the queue.

Everything a request needs is reached from a `SharedState`; nothing is a module global,
so tests can run several servers in one process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .devices import choose_devices
from .generation.params import GenerationSettings
from .models.discovery import CheckpointInfo, CheckpointNotFound, find_checkpoint, list_checkpoints, with_hash
from .models.loading import ModelSlot
from .models.model import SDModel

log = logging.getLogger(__name__)

# Settings with A1111's option names and defaults (the subset that means something here).
OPTION_DEFAULTS: dict[str, Any] = {
    "sd_model_checkpoint": "",
    "sd_vae": "Automatic",  # "Automatic", "None" or a VAE file name (models/vae.py)
    "CLIP_stop_at_last_layers": 1,
    "emphasis": "Original",
    "comma_padding_backtrack": 20,
    "sdxl_clip_l_skip": False,
    "use_old_scheduling": False,
    "randn_source": "GPU",
    "eta_noise_seed_delta": 0,
    "eta_ancestral": 1.0,
    "eta_ddim": 0.0,
    "img2img_fix_steps": False,
    "initial_noise_multiplier": 1.0,
    "live_previews_enable": True,
    "show_progress_every_n_steps": 10,
    "samples_save": True,
    "samples_format": "png",
    "samples_filename_pattern": "",
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images",
}
# Options that name folders: frozen by --hide-ui-dir-config.
DIRECTORY_OPTIONS = ("outdir_txt2img_samples", "outdir_img2img_samples")


class OptionsError(ValueError):
    """A setting cannot be changed as asked; the message says which and why."""


class Options:
    """User settings, persisted to config.json (A1111's file and key names)."""

    def __init__(self, path: Path, frozen: bool = False, frozen_keys: tuple[str, ...] = ()):
        self.path = path
        self.frozen = frozen
        self.frozen_keys = set(frozen_keys)
        self._lock = threading.Lock()
        self._values = dict(OPTION_DEFAULTS)
        if path.is_file():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
                self._values.update({k: v for k, v in stored.items() if k in OPTION_DEFAULTS})
            except (OSError, ValueError) as error:
                log.warning("%s is unreadable (%s); using default settings", path, error)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def update(self, changes: dict[str, Any]) -> None:
        """Validate every change first, then apply all and save; nothing changes on an error."""
        problems = []
        for key, value in changes.items():
            if key not in OPTION_DEFAULTS:
                problems.append(f"unknown setting {key!r}")
            elif self.frozen or key in self.frozen_keys:
                problems.append(f"setting {key!r} is frozen by a command-line flag")
            elif type(OPTION_DEFAULTS[key]) is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                continue
            elif not isinstance(value, type(OPTION_DEFAULTS[key])) or isinstance(value, bool) != isinstance(
                OPTION_DEFAULTS[key], bool
            ):
                problems.append(f"setting {key!r} must be {type(OPTION_DEFAULTS[key]).__name__}, not {value!r}")
        if problems:
            raise OptionsError("; ".join(problems))
        with self._lock:
            self._values.update(changes)
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, encoding="utf-8") as handle:
            json.dump(self._values, handle, indent=4)
        os.replace(handle.name, self.path)

    def generation_settings(self, overrides: dict[str, Any] | None = None) -> GenerationSettings:
        """The settings a job generates with; `overrides` (one request's) win over the stored values."""
        values = {**self.as_dict(), **(overrides or {})}
        return GenerationSettings(
            clip_skip=values["CLIP_stop_at_last_layers"],
            emphasis=values["emphasis"],
            comma_padding_backtrack=values["comma_padding_backtrack"],
            sdxl_clip_l_skip=values["sdxl_clip_l_skip"],
            use_old_scheduling=values["use_old_scheduling"],
            randn_source=values["randn_source"],
            eta_noise_seed_delta=values["eta_noise_seed_delta"],
            eta_ancestral=values["eta_ancestral"],
            eta_ddim=values["eta_ddim"],
            live_preview_every=values["show_progress_every_n_steps"] if values["live_previews_enable"] else 0,
            samples_filename_pattern=values["samples_filename_pattern"] or "[seed]",
            samples_format=values["samples_format"],
        )


class ModelManager:
    """Which checkpoints exist, and the one that is loaded (loaded on first use)."""

    def __init__(self, flags: argparse.Namespace, options: Options):
        devices = choose_devices(flags.use_cpu, flags.precision, flags.no_half, flags.no_half_vae)
        self.flags = flags
        self.options = options
        self.cache_path = flags.data_dir / "cache.json"
        self.slot = ModelSlot(devices.device, devices.dtype, devices.vae_dtype, cache_path=self.cache_path)
        self._list_lock = threading.Lock()  # the checkpoint list; never held while loading
        self._load_lock = threading.Lock()
        self._checkpoints: list[CheckpointInfo] = []
        self.refresh()

    @property
    def models_dir(self) -> Path:
        return self.flags.models_dir / "Stable-diffusion"

    def refresh(self) -> list[CheckpointInfo]:
        found = list_checkpoints(self.models_dir, ckpt_dir=self.flags.ckpt_dir, ckpt=self.flags.ckpt,
                                 cache_path=self.cache_path)
        with self._list_lock:
            self._checkpoints = found
        return found

    def checkpoints(self) -> list[CheckpointInfo]:
        with self._list_lock:
            return list(self._checkpoints)

    def find(self, name: str | None) -> CheckpointInfo:
        return find_checkpoint(name or None, self.checkpoints())

    def current(self) -> SDModel:
        """The loaded model, loading the chosen (or first) checkpoint if none is."""
        with self._load_lock:
            if self.slot.model is not None:
                return self.slot.model
            return self._load(self.options["sd_model_checkpoint"] or self.flags.ckpt)

    def switch(self, name: str) -> SDModel:
        with self._load_lock:
            return self._load(name)

    def _load(self, name: str | None) -> SDModel:
        try:
            info = self.find(name)
        except CheckpointNotFound:
            if not name:
                raise
            log.warning("checkpoint %r not found; loading the first one", name)
            info = self.find(None)
        info = with_hash(info, self.cache_path)
        return self.slot.switch(info)


@dataclass
class SharedState:
    flags: argparse.Namespace
    options: Options
    models: ModelManager
    queue: Any = None  # the job queue (jobs.JobQueue), attached when the server starts
    embeddings: Any = None  # textual inversion (networks.embeddings.database_for), created on first use

    @classmethod
    def create(cls, flags: argparse.Namespace) -> "SharedState":
        settings_file = Path(flags.ui_settings_file) if flags.ui_settings_file else flags.data_dir / "config.json"
        frozen = DIRECTORY_OPTIONS if flags.hide_ui_dir_config else ()
        options = Options(settings_file, frozen=flags.freeze_settings, frozen_keys=frozen)
        return cls(flags, options, ModelManager(flags, options))
