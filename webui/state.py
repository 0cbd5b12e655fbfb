"""The one explicit shared state of a running WebUI: flags, settings, the model, the queue.

Everything a request needs is reached from a `SharedState`; nothing is a module global,
so tests can run several servers in one process.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .a1111_options import A1111_CHOICES, A1111_OPTIONS
from . import runtime
from .devices import choose_devices
from .extensions.callbacks import CallbackRegistry
from .extensions.extra_networks import ExtraNetworkRegistry
from .extensions.scripts import ScriptRegistry
from .generation.conditioning import EMPHASIS_MODES
from .generation.params import MAX_CLIP_SKIP, GenerationSettings
from .generation.rng import SOURCES
from .models.discovery import (
    CheckpointInfo, CheckpointNotFound, available_checkpoints, find_checkpoint, with_hash,
)
from .models.loading import (
    CheckpointError, ModelSlot, checkpoint_defaults, checkpoint_family, checkpoint_problem, family_defaults,
)
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


class ModelManager:
    """Which checkpoints exist, and the one that is loaded (loaded on first use).

    With no checkpoint chosen (no `sd_model_checkpoint`, no --ckpt) the default is the first one that
    loads: one that is broken (a truncated download sorting first) is skipped with a warning, so it
    cannot fail every job. A checkpoint the user chose fails its jobs with the reason instead.
    """

    def __init__(self, flags: argparse.Namespace, options: Options):
        devices = choose_devices(flags.use_cpu, flags.precision, flags.no_half, flags.no_half_vae)
        self.flags = flags
        self.options = options
        self.cache_path = flags.data_dir / "cache.json"
        self.compute_device = devices.device
        # --medvram/--lowvram: checkpoints load into CPU memory, and only the part at work goes to the GPU
        load_device = torch.device("cpu") if self.runtime_options().loads_on_cpu else devices.device
        self.slot = ModelSlot(load_device, devices.dtype, devices.vae_dtype, cache_path=self.cache_path,
                              models_root=getattr(flags, "models_dir", None))
        self._list_lock = threading.Lock()  # the checkpoint list; never held while loading
        self._load_lock = threading.Lock()
        self._checkpoints: list[CheckpointInfo] = []
        self._unloadable: dict[Path, str] = {}  # checkpoints found broken -> why; forgotten on refresh()
        self.on_loaded = None  # called with each newly loaded model (extensions' on_model_loaded)
        self.refresh()

    @property
    def models_dir(self) -> Path:
        return self.flags.models_dir / "Stable-diffusion"

    def refresh(self) -> list[CheckpointInfo]:
        found = available_checkpoints(self.models_dir, ckpt_dir=self.flags.ckpt_dir, ckpt=self.flags.ckpt,
                                      cache_path=self.cache_path)
        with self._list_lock:
            self._checkpoints = found
            self._unloadable.clear()  # a file fixed or downloaded again gets another try
        return found

    def checkpoints(self) -> list[CheckpointInfo]:
        with self._list_lock:
            return list(self._checkpoints)

    def find(self, name: str | None) -> CheckpointInfo:
        return find_checkpoint(name or None, self.checkpoints())

    def _chosen(self) -> str | None:
        return self.options["sd_model_checkpoint"] or self.flags.ckpt or None

    def unloadable(self, info: CheckpointInfo) -> str | None:
        """Why `info` cannot load, when a load failed or its headers show it (see `checkpoint_problem`)."""
        with self._list_lock:
            known = self._unloadable.get(info.path)
        if known is None and (known := checkpoint_problem(info)) is not None:
            with self._list_lock:
                self._unloadable[info.path] = known
        return known

    def default_checkpoint(self) -> CheckpointInfo:
        """The checkpoint used when none is chosen: the first not known to be broken (the first of all
        when every one is, so that loading it reports why)."""
        checkpoints = self.checkpoints()
        return next((info for info in checkpoints if self.unloadable(info) is None), None) or self.find(None)

    def generation_defaults(self, name: str | None = None) -> dict[str, Any]:
        """The own defaults (width, height, steps, ...; our demo model has them) of checkpoint `name`, or of the
        chosen one, read from its metadata without loading it; {} for ordinary checkpoints."""
        try:
            wanted = name or self._chosen()
            info = self.find(wanted) if wanted else self.default_checkpoint()
        except LookupError:
            return {}
        return checkpoint_defaults(info)

    def family_and_defaults(self, name: str) -> tuple[str | None, dict[str, Any]]:
        """The family of checkpoint `name` and its defaults as fields (own metadata over the family's), for the
        UI to switch to when the chosen checkpoint is of another family; (None, {}) when that cannot be told."""
        try:
            info = self.find(name)
        except LookupError:
            return None, {}
        family = checkpoint_family(info)
        if family is None:
            return None, {}
        return family.name, family_defaults(family) | checkpoint_defaults(info)

    def selected_title(self) -> str:
        """What `sd_model_checkpoint` reads as (A1111 shows the checkpoint in use, never ""): the chosen
        checkpoint's title; with none chosen, the loaded model's, else the one the next job loads."""
        wanted = self.options["sd_model_checkpoint"]
        loaded = self.slot.model
        try:
            if not wanted and loaded is not None:
                return next((info.title for info in self.checkpoints() if info.path == loaded.path), loaded.name)
            chosen = wanted or self.flags.ckpt
            return (self.find(chosen) if chosen else self.default_checkpoint()).title
        except LookupError:
            return wanted

    def current(self) -> SDModel:
        """The loaded model, loading the chosen (or else the first loadable) checkpoint if none is."""
        with self._load_lock:
            before = self.slot.model
            if before is not None:
                model = self._up_to_date(before)
            else:
                chosen = self._chosen()
                model = self._load(chosen) if chosen else self._load_default()
        self._announce(before, model)
        return model

    def switch(self, name: str) -> SDModel:
        with self._load_lock:
            before = self.slot.model
            model = self._load(name)
        self._announce(before, model)
        return model

    def _announce(self, before, model) -> None:
        # Outside the load lock: a callback may ask for the model itself.
        if model is not before and self.on_loaded is not None:
            self.on_loaded(model)

    def _load(self, name: str | None) -> SDModel:
        try:
            info = self.find(name)
        except CheckpointNotFound:
            if not name:
                raise
            log.warning("checkpoint %r not found; loading the first one that loads", name)
            return self._load_default()
        return self._load_info(info)

    def _load_default(self) -> SDModel:
        """The first checkpoint that loads; each broken one before it is skipped with a warning."""
        problems = []
        for info in self.checkpoints():
            problem = self.unloadable(info)
            if problem is None:
                try:
                    return self._load_info(info)
                except CheckpointError as error:
                    if isinstance(error.__cause__, (MemoryError, torch.cuda.OutOfMemoryError)):
                        raise  # the machine's limit, not a broken file: another checkpoint is no answer
                    problem = str(error)
                    with self._list_lock:
                        self._unloadable[info.path] = problem
            log.warning("checkpoint %s cannot be loaded (%s); trying the next one", info.title, problem)
            problems.append(problem)
        if not problems:
            self.find(None)  # raises CheckpointNotFound, saying where checkpoints go
        raise CheckpointError(f"no checkpoint could be loaded: {'; '.join(problems)}")

    def _load_info(self, info: CheckpointInfo) -> SDModel:
        hashed = with_hash(info, self.cache_path)
        if hashed is not info:  # the list shows the hash from now on, as A1111's titles do
            with self._list_lock:
                self._checkpoints = [hashed if known == info else known for known in self._checkpoints]
        return self._up_to_date(self.slot.switch(hashed))

    def _up_to_date(self, model: SDModel) -> SDModel:
        """`model` as the flags and settings ask now: FP8 weight and compile_unet changed since it loaded
        (Settings, POST /options) apply to the next job, as A1111 reloads the model when they change."""
        options = self.runtime_options()
        if runtime.needs_reload(model, options):
            log.info("FP8 weight is off now: loading %s again for its full-precision weights", model.name)
            source = next((info for info in self.checkpoints() if info.path == model.path), model.path)
            self.slot.unload()
            model = self.slot.switch(source)
        return runtime.prepare(model, options, self.compute_device)

    def runtime_options(self) -> runtime.RuntimeOptions:
        """--compile (or its setting), the memory mode and FP8 weight storage (the settings: read at each job)."""
        return runtime.RuntimeOptions.from_flags(self.flags, self.options["fp8_storage"], self.options["compile_unet"])


@dataclass
class SharedState:
    flags: argparse.Namespace
    options: Options
    models: ModelManager
    queue: Any = None  # the job queue (jobs.JobQueue), attached when the server starts
    embeddings: Any = None  # textual inversion (networks.embeddings.database_for), created on first use
    # Extensions (webui/extensions): global callbacks, loaded script classes, one ScriptRunner per
    # tab ("txt2img", "img2img"; built after loading), the loader's Extension list, the gr.Blocks.
    callbacks: CallbackRegistry = field(default_factory=CallbackRegistry)
    scripts: ScriptRegistry = field(default_factory=ScriptRegistry)
    runners: dict[str, Any] = field(default_factory=dict)
    extra_networks: ExtraNetworkRegistry = field(default_factory=ExtraNetworkRegistry)  # extensions' <name:...>
    extensions: list = field(default_factory=list)
    demo: Any = None
    restart: Any = None  # set by app.main: ends the server and starts the process again (Extensions tab)
    access: Any = None  # logins, admins and the login throttle (auth.Access), made from the flags if not given
    interrogator: Any = None  # Interrogate CLIP's models (interrogate.Interrogator), created on first use

    def __post_init__(self):
        if self.access is None:
            from .auth import Access

            self.access = Access.from_flags(self.flags)
        if isinstance(self.models, ModelManager):  # extensions hear of every checkpoint loaded
            self.models.on_loaded = lambda model: self.callbacks.run("model_loaded", model)
        from .networks.hypernet_network import HypernetExtraNetwork  # <hypernet:...>, as A1111 registers it

        self.extra_networks.register(HypernetExtraNetwork(self), builtin=True)

    @classmethod
    def create(cls, flags: argparse.Namespace) -> "SharedState":
        settings_file = Path(flags.ui_settings_file) if flags.ui_settings_file else flags.data_dir / "config.json"
        frozen = DIRECTORY_OPTIONS if flags.hide_ui_dir_config else ()
        options = Options(settings_file, frozen=flags.freeze_settings, frozen_keys=frozen)
        return cls(flags, options, ModelManager(flags, options))

    def output_folder(self, kind: str, grids: bool = False) -> Path:
        """Where images (grids) of `kind` are saved now: the settings' folder (state.output_folder)."""
        return output_folder(self.options, self.flags.data_dir, kind, grids)

    def generation_settings(self, overrides: dict[str, Any] | None = None) -> GenerationSettings:
        """What one job generates with: the options, a request's overrides, and the command line's NaN check."""
        return self.options.generation_settings(overrides, nan_check=not self.flags.disable_nan_check)
