"""The one explicit shared state of a running WebUI: flags, settings, the model, the queue.

Everything a request needs is reached from a `SharedState`; nothing is a module global,
so tests can run several servers in one process.
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import runtime
from .devices import choose_devices
from .extensions.callbacks import CallbackRegistry
from .extensions.extra_networks import ExtraNetworkRegistry
from .extensions.scripts import ScriptRegistry
from .generation.params import GenerationSettings
from .models.discovery import (
    CheckpointInfo, CheckpointNotFound, available_checkpoints, find_checkpoint, with_hash,
)
from .models.loading import ModelSlot, checkpoint_defaults, checkpoint_family, family_defaults
from .models.model import SDModel
from .models.weights import CheckpointError, checkpoint_problem
from .options import DIRECTORY_OPTIONS, Options, output_folder

log = logging.getLogger(__name__)


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
        """Where images (grids) of `kind` are saved now: the settings' folder (options.output_folder)."""
        return output_folder(self.options, self.flags.data_dir, kind, grids)

    def generation_settings(self, overrides: dict[str, Any] | None = None) -> GenerationSettings:
        """What one job generates with: the options, a request's overrides, and the command line's NaN check."""
        return self.options.generation_settings(overrides, nan_check=not self.flags.disable_nan_check)
