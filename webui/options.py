"""Settings: A1111's option names and defaults, the rules their values must meet, and `Options`, the
user's settings as stored in config.json (extensions' settings included). The one place that says where
images are saved (`output_folder`) reads them too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .a1111_options import A1111_CHOICES, A1111_OPTIONS
from .generation.conditioning import EMPHASIS_MODES
from .generation.params import MAX_CLIP_SKIP, GenerationSettings
from .generation.rng import SOURCES

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
    # A1111's output folders (output_folder below): relative ones are inside --data-dir, A1111's root.
    "outdir_samples": "",  # when set, every kind's images go here
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images",
    "outdir_extras_samples": "outputs/extras-images",
    "outdir_grids": "",  # when set, every kind's grids go here
    "outdir_txt2img_grids": "outputs/txt2img-grids",
    "outdir_img2img_grids": "outputs/img2img-grids",
    "disabled_extensions": [],  # extension folder names (Extensions tab)
    "disable_all_extensions": "none",  # "none", "extra" (only built-in ones run) or "all"
    "sd_hypernetwork": "None",  # a hypernetwork added to every prompt (networks/hypernet_network.py)
    "extra_networks_default_multiplier": 1.0,  # its weight there
    # Ours: an API client that disconnects has its job cancelled (nobody gets its images; others wait behind it).
    "api_cancel_on_disconnect": True,
    # Ours: torch.compile the UNet/transformer (as --compile; webui/fast_path.py), from the next job on
    "compile_unet": False,
}
# Every setting name a client may send: A1111 v1.10's (most stored only: a1111_options.py) and ours, ours winning.
KNOWN_DEFAULTS: dict[str, Any] = {**A1111_OPTIONS, **OPTION_DEFAULTS}
# Options that name the folders images are saved in: frozen by --hide-ui-dir-config, and never one request's
# (override_settings): on a shared server only who may change the settings decides where files are written.
DIRECTORY_OPTIONS = ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples",
                     "outdir_grids", "outdir_txt2img_grids", "outdir_img2img_grids")


def output_folder(options, data_dir: Path, kind: str, grids: bool = False) -> Path:
    """The folder where images of `kind` ("txt2img", "img2img", "extras") are saved, or its grids with `grids`
    (jobs add the <date> subfolder): as A1111 picks it, `outdir_samples` / `outdir_grids` when set (one folder
    for every kind), else the kind's own setting, else that setting's default. A relative folder is inside
    `data_dir` (A1111's root); an absolute one is used as it is."""
    shared, own = ("outdir_grids", f"outdir_{kind}_grids") if grids else ("outdir_samples", f"outdir_{kind}_samples")
    return Path(data_dir) / (options[shared] or options[own] or OPTION_DEFAULTS[own])


def output_folders(options, data_dir: Path) -> list[Path]:
    """Every folder `output_folder` gives now (each once): what the file= route serves besides outputs/."""
    folders = [output_folder(options, data_dir, kind) for kind in ("txt2img", "img2img", "extras")]
    folders += [output_folder(options, data_dir, kind, grids=True) for kind in ("txt2img", "img2img")]
    return list(dict.fromkeys(folders))


def _between(low: float, high: float | None = None):
    """A rule: a number from `low` to `high` (no upper end when None); NaN is never in range."""
    def check(value) -> str | None:
        if not (low <= value and (high is None or value <= high)):
            return f"must be between {low} and {high}" if high is not None else f"must be {low} or more"
        return None
    return check


def _one_of(*choices: str):
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def _file_name_pattern(value: str) -> str | None:
    """A1111's [tag] pattern names a file inside the day's outputs folder: nothing in it (the literal text or
    a tag's <argument>) may lead elsewhere."""
    if any(c in value for c in "/\\\0:") or ".." in value:
        return "must be a file name: no /, \\, :, .. or NUL (the image stays in its outputs folder)"
    return None if len(value) <= 256 else "must be at most 256 characters"


def _folder(value: str) -> str | None:
    return "must be a folder path without NUL" if "\0" in value else None


def _text_list(value: list) -> str | None:
    return None if all(isinstance(item, str) for item in value) else "must be a list of names"


# Content rules beyond the default's type, per setting: A1111's ranges and choices (its sliders' ranges), so that
# no stored value can fail every job. The one check of a setting's value: POST /options, the Settings tab,
# override_settings (per job or set by a script) and config.json at start all go through `option_problem`.
OPTION_RULES: dict[str, Any] = {
    "CLIP_stop_at_last_layers": _between(1, MAX_CLIP_SKIP),
    "emphasis": _one_of(*EMPHASIS_MODES),
    "comma_padding_backtrack": _between(0, 74),
    "randn_source": _one_of(*SOURCES),
    "eta_noise_seed_delta": _between(-(2**32), 2**32),
    "eta_ancestral": _between(0, 1),
    "eta_ddim": _between(0, 1),
    "initial_noise_multiplier": _between(0.5, 1.5),
    "show_progress_every_n_steps": _between(-1),
    "samples_format": _one_of("png", "jpg", "jpeg", "webp"),
    "samples_filename_pattern": _file_name_pattern,
    "disabled_extensions": _text_list,
    **{key: _folder for key in DIRECTORY_OPTIONS},
    "disable_all_extensions": _one_of("none", "extra", "all"),
    "extra_networks_default_multiplier": _between(0, 2),
}
for _key, _choices in A1111_CHOICES.items():  # A1111's radios: only their choices
    OPTION_RULES.setdefault(_key, _one_of(*_choices))


class OptionsError(ValueError):
    """A setting cannot be changed as asked; the message says which and why."""


def type_problem(key: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot be setting `key` (whose default is `default`), or None if it can.
    The type must be the default's; a whole number may stand for a float; None defaults take anything."""
    if default is None:
        return None
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        return f"setting {key!r} must be {type(default).__name__}, not {value!r}"
    return None


def option_problem(key: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot be setting `key`, or None: its type (`type_problem`), a finite number for a float
    setting (extensions' too), then the setting's rule in OPTION_RULES."""
    if (problem := type_problem(key, value, default)) is not None:
        return problem
    if isinstance(default, float) and not math.isfinite(value):
        return f"setting {key!r} must be a finite number, not {value!r}"
    rule = OPTION_RULES.get(key)
    if rule is not None and (problem := rule(value)) is not None:
        return f"setting {key!r} {problem}, not {value!r}"
    return None


def checked_settings(values: dict[str, Any] | None, where: str = "override_settings",
                     known: dict[str, Any] | None = None) -> dict[str, Any]:
    """The entries of `values` that are settings, each checked (`option_problem`).

    With `known` (every setting's default: `Options.defaults()`, extensions' included) a key that is no setting
    is refused, as A1111 refuses it. Without it (a script's `p.override_settings`, whose extension keys we cannot
    see here) only A1111's and our keys are kept and others are left out. A bad value, or an output folder
    (DIRECTORY_OPTIONS: a job may not write elsewhere), is an OptionsError naming `where` and the key.
    """
    defaults = KNOWN_DEFAULTS if known is None else known
    kept, problems = {}, []
    for key, value in (values or {}).items():
        if key not in defaults:
            if known is not None:
                problems.append(f"{where}: unknown setting {key!r}")
            continue
        if key in DIRECTORY_OPTIONS:  # refused, not ignored: the client learns its images would not go there
            problems.append(f"{where}: setting {key!r} names an output folder, which only the server's settings "
                            f"change (Settings tab, POST /sdapi/v1/options), not one job")
            continue
        if (problem := option_problem(key, value, defaults[key])) is not None:
            problems.append(f"{where}: {problem}")
        kept[key] = value
    if problems:
        raise OptionsError("; ".join(problems))
    return kept


def read_settings_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    """(the stored settings, the problems found) of a config.json. Never raises: an unreadable file, or one that
    is not a JSON object, gives no settings and says why. Values are checked later, key by key (Options)."""
    if not path.is_file():
        return {}, []
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {}, [f"{path.name} is unreadable ({error}); using default settings"]
    if not isinstance(stored, dict):
        return {}, [f"{path.name} holds a JSON {type(stored).__name__}, not an object of settings; using default settings"]
    return stored, []


class Options:
    """User settings, persisted to config.json (A1111's file and key names).

    Extensions add settings of their own with `register` (A1111's shared.opts.add_option): they are
    validated against their default's type and saved next to the built-in ones. Stored values of
    settings nobody registered (an extension now disabled) are kept and written back.

    Every value is checked (`option_problem`) when it changes and when config.json is read: a bad stored
    value, or an unreadable file, gives the default and a line in `load_warnings` (logged, and shown on
    the Settings tab), never a failed start or a setting that fails every job.
    """

    def __init__(self, path: Path, frozen: bool = False, frozen_keys: tuple[str, ...] = ()):
        self.path = path
        self.frozen = frozen
        self.frozen_keys = set(frozen_keys)
        self._lock = threading.Lock()
        self._values = dict(KNOWN_DEFAULTS)
        self._extension_defaults: dict[str, Any] = {}
        self._onchange: dict[str, Any] = {}
        self._infos: dict[str, Any] = {}  # key -> the extension's OptionInfo (label, component, section)
        self._unclaimed: dict[str, Any] = {}  # stored keys not (yet) registered
        stored, self.load_warnings = read_settings_file(path)  # load_warnings: what was wrong in the file
        for key, value in stored.items():
            if key not in KNOWN_DEFAULTS:
                self._unclaimed[key] = value
            elif (problem := option_problem(key, value, KNOWN_DEFAULTS[key])) is not None:
                self.load_warnings.append(f"{path.name}: {problem}; using the default, {KNOWN_DEFAULTS[key]!r}")
            else:
                self._values[key] = value
        for warning in self.load_warnings:
            log.warning("%s", warning)

    def register(self, key: str, default: Any, onchange=None, info: Any = None) -> None:
        """An extension's setting: its stored value when config.json has one, else `default`.
        `onchange()` is called after the setting changes; `info` (A1111's OptionInfo) is kept
        for the Settings page."""
        with self._lock:
            if onchange is not None:
                self._onchange[key] = onchange
            if info is not None:
                self._infos[key] = info
            if key in KNOWN_DEFAULTS:  # an extension declaring an A1111 setting (Lora's sd_lora) keeps ours
                return
            self._extension_defaults[key] = default
            if key not in self._values:
                stored = self._unclaimed.pop(key, default)
                if (problem := option_problem(key, stored, default)) is not None:
                    warning = f"{self.path.name}: {problem}; using the default, {default!r}"
                    self.load_warnings.append(warning)
                    log.warning("%s", warning)
                    stored = default
                self._values[key] = stored

    def registered(self) -> dict[str, Any]:
        """The OptionInfo of every setting extensions registered, in registration order."""
        with self._lock:
            return dict(self._infos)

    def defaults(self) -> dict[str, Any]:
        """Every known setting's default: the built-in ones and those extensions registered."""
        with self._lock:
            return {**KNOWN_DEFAULTS, **self._extension_defaults}

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def update(self, changes: dict[str, Any]) -> None:
        """Validate every change first, then apply all and save; nothing changes on an error."""
        defaults = self.defaults()
        # A slider may send 3.0 for a whole-number setting.
        changes = {key: int(value) if type(defaults.get(key)) is int and isinstance(value, float) and value.is_integer()
                   else value for key, value in changes.items()}
        problems = []
        for key, value in changes.items():
            if key not in defaults:
                problems.append(f"unknown setting {key!r}")
            elif self.frozen or key in self.frozen_keys:
                problems.append(f"setting {key!r} is frozen by a command-line flag")
            elif (problem := option_problem(key, value, defaults[key])) is not None:
                problems.append(problem)
        if problems:
            raise OptionsError("; ".join(problems))
        with self._lock:
            changed = [key for key, value in changes.items() if self._values.get(key) != value]
            self._values.update(changes)
            self._save()
            callbacks = [self._onchange[key] for key in changed if key in self._onchange]
        for callback in callbacks:  # an extension's onchange failing does not undo the change
            try:
                callback()
            except Exception:
                log.exception("onchange of a setting failed")

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, encoding="utf-8") as handle:
            json.dump({**self._unclaimed, **self._values}, handle, indent=4)
        os.replace(handle.name, self.path)

    def generation_settings(self, overrides: dict[str, Any] | None = None, nan_check: bool = True) -> GenerationSettings:
        """The settings a job generates with; `overrides` (one request's) win over the stored values.
        `nan_check` comes from the command line (--disable-nan-check), not from the options."""
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
            nan_check=nan_check,
            s_min_uncond=values["s_min_uncond"],
            s_min_uncond_all=values["s_min_uncond_all"],
            skip_early_cond=values["skip_early_cond"],
            pad_cond_uncond=values["pad_cond_uncond"],
            pad_cond_uncond_v0=values["pad_cond_uncond_v0"],
        )
