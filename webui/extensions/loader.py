"""Extensions on disk and bringing them up: discovery (the built-in ones shipped in
webui/extensions/builtin/, then <data-dir>/extensions/, each sorted by folder name), their
metadata.ini and git state, preload.py (flags) and importing scripts/*.py (install.py: installer.py).

Startup (webui/app.py main): discover -> run_preloads -> parse the flags -> run_installers ->
SharedState -> start_extensions (load_scripts, runners) -> create_app (fires app_started).
An extension whose preload.py or scripts fail is disabled and reported (`error`); the WebUI
and the other extensions go on.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import git
from .metadata import Metadata, ScriptFile, order_scripts

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
DISABLE_ALL_CHOICES = ("none", "extra", "all")  # option disable_all_extensions: "extra" = only built-ins


def extensions_dir(flags) -> Path:
    """Where users' extensions live: <data-dir>/extensions, as in A1111."""
    return Path(flags.data_dir) / "extensions"


@dataclass
class Extension:
    name: str  # the folder name: what the option disabled_extensions lists
    path: Path
    builtin: bool
    enabled: bool = True  # the user's choice (settings and flags)
    remote: str | None = None
    branch: str | None = None
    commit: str | None = None
    commit_date: int | None = None  # unix time
    metadata: Metadata = field(default_factory=Metadata)
    error: str | None = None  # why it is not running (preload.py or a script failed)
    scripts: list[Path] = field(default_factory=list)
    javascript: list[Path] = field(default_factory=list)  # .js and .mjs, sorted
    stylesheet: Path | None = None
    install_error: str | None = None  # install.py failed (the extension still loads)
    install_output: str = ""  # the end of install.py's last output
    warnings: list[str] = field(default_factory=list)  # problems that disable nothing
    loaded: bool = False  # its scripts and page files are in use in this process

    @property
    def canonical_name(self) -> str:
        return self.name.lower()  # A1111 lets the folder name win over metadata's Name

    @property
    def version(self) -> str:
        return (self.commit or "")[:8]

    @property
    def active(self) -> bool:
        return self.enabled and self.error is None


def read_extension(path: Path, builtin: bool) -> Extension:
    ext = Extension(name=path.name, path=path, builtin=builtin, metadata=Metadata(path / "metadata.ini"))
    ext.scripts = sorted(p for p in (path / "scripts").glob("*.py") if p.is_file())
    ext.javascript = sorted(p for p in (path / "javascript").glob("*") if p.suffix in (".js", ".mjs") and p.is_file())
    ext.stylesheet = path / "style.css" if (path / "style.css").is_file() else None
    if ext.metadata.error:
        ext.warnings.append(ext.metadata.error)
    info = git.read_info(path)
    if info is not None:
        ext.remote, ext.branch, ext.commit, ext.commit_date = info.remote, info.branch, info.commit, info.commit_date
    return ext


def discover(state) -> list[Extension]:
    """Every extension folder, enabled or not. `state` is a SharedState, or just the flags
    (at startup, before there is a state: settings are then read from config.json)."""
    flags = getattr(state, "flags", state)
    disabled, mode = _enable_settings(state, flags)
    if flags.disable_all_extensions:
        mode = "all"
    elif flags.disable_extra_extensions and mode == "none":
        mode = "extra"
    found: list[Extension] = []
    seen: dict[str, Extension] = {}
    for builtin, folder in ((True, BUILTIN_DIR), (False, extensions_dir(flags))):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_dir() or path.name.startswith((".", "__")):
                continue
            ext = read_extension(path, builtin)
            ext.enabled = not (mode == "all" or (mode == "extra" and not builtin) or ext.name in disabled)
            if ext.canonical_name in seen:
                ext.error = f"another extension has the same name: {seen[ext.canonical_name].path}"
            seen.setdefault(ext.canonical_name, ext)
            found.append(ext)
    _check_requirements(found)
    return found


def _enable_settings(state, flags) -> tuple[set[str], str]:
    options = getattr(state, "options", None)
    if options is not None:
        values = options.as_dict()
    else:
        from ..options import OPTION_DEFAULTS, option_problem, read_settings_file

        settings = Path(flags.ui_settings_file) if flags.ui_settings_file else Path(flags.data_dir) / "config.json"
        stored, _ = read_settings_file(settings)  # Options reports the file's problems when it reads it
        values = {key: stored[key] for key in ("disabled_extensions", "disable_all_extensions")
                  if key in stored and option_problem(key, stored[key], OPTION_DEFAULTS[key]) is None}
    mode = values.get("disable_all_extensions", "none")
    return set(values.get("disabled_extensions") or ()), mode if mode in DISABLE_ALL_CHOICES else "none"


def _check_requirements(extensions: list[Extension]) -> None:
    """[Extension] Requires: a missing or disabled requirement is reported, not fatal."""
    present = set()
    for ext in extensions:
        if ext.active:
            present |= {ext.canonical_name, ext.metadata.name.lower()} - {""}
    for ext in extensions:
        for group in ext.metadata.requires:
            if not present.intersection(group):
                ext.warnings.append(f"requires {' or '.join(group)}, which is not installed or not enabled")


def disable(ext: Extension, what: str, error: BaseException) -> None:
    from .diagnostics import where

    ext.error = f"{what}: {type(error).__name__}: {error}{where(ext, error)}"
    log.error("extension %s disabled: %s failed", ext.name, what, exc_info=error)


def _import_file(path: Path, name: str, register: bool = False):
    """Import a file by path as module `name`. `register`: put it in sys.modules first (script files:
    libraries such as Gradio look classes' modules up there, e.g. inspect.getfile on a component an
    extension subclasses); A1111's plain name is not unique, so script modules get `script_module_name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if register:
            sys.modules.pop(name, None)
        raise
    return module


def script_module_name(extension: str, path: Path) -> str:
    """A unique, importable-looking name for one extension script file, e.g. `webui_scripts.sd_webui_ar.ar`."""
    def clean(text: str) -> str:
        return re.sub(r"\W", "_", text) or "_"
    return f"webui_scripts.{clean(extension)}.{clean(path.stem)}"


# -- preload.py: flags, before the command line is parsed ----------------------------------------

def run_preloads(extensions: list[Extension], parser, flags=None) -> None:
    """`flags`: the early parse, which `modules.paths` and `shared.cmd_opts` show to preload.py
    files (there is no SharedState yet)."""
    for ext in extensions:
        file = ext.path / "preload.py"
        if not ext.active or not file.is_file():
            continue
        try:
            _install_compat(flags, extensions)
            preload = getattr(_import_file(file, "preload"), "preload", None)
            if callable(preload):
                preload(parser)
        except (Exception, SystemExit) as error:  # argparse conflicts raise ArgumentError
            disable(ext, "preload.py", error)


def _install_compat(flags, extensions: list[Extension]) -> None:
    from types import SimpleNamespace

    from .. import compat

    compat.install()
    if flags is not None:  # until load_scripts binds the real state
        compat.bind(SimpleNamespace(flags=flags, extensions=extensions))


# -- scripts/*.py: imported into a SharedState ---------------------------------------------------

def load_scripts(state) -> None:
    """Import the scripts of the active extensions into `state` (replacing what was loaded).

    Every file is imported first; an extension with a file that fails is disabled as a whole
    (its callbacks removed, none of its Script classes registered), then the rest are registered
    in load order."""
    from .. import compat
    from .scripts import loading

    compat.install()
    compat.bind(state)
    state.callbacks.run("script_unloaded")
    state.callbacks.clear()
    state.scripts.clear()
    state.extra_networks.clear()  # extensions register theirs again as their scripts load
    files = order_scripts([ScriptFile(ext, path) for ext in state.extensions if ext.active for path in ext.scripts])
    imported = []
    for file in files:
        if file.extension.error:
            continue
        try:
            with loading(file.path, file.extension.path):
                name = script_module_name(file.extension.name, file.path)
                imported.append((file, _import_file(file.path, name, register=True)))
        except (Exception, SystemExit) as error:
            disable(file.extension, f"scripts/{file.path.name}", error)
    for ext in state.extensions:
        if ext.error:
            for path in ext.scripts:
                state.callbacks.remove_owner(path)
    for file, module in imported:
        if not file.extension.error:
            state.scripts.add_module(module, file.path, file.extension.path, file.extension.name)
    for ext in state.extensions:
        ext.loaded = ext.active


def start_extensions(state, extensions: list[Extension] | None = None) -> None:
    """Load the extensions into `state` and build the per-tab script runners.

    app.main passes the list it discovered before parsing flags; tests may pass nothing."""
    from .scripts import ScriptRunner

    state.extensions = discover(state) if extensions is None else extensions
    load_scripts(state)
    state.runners = {"txt2img": ScriptRunner(state.scripts, is_img2img=False),
                     "img2img": ScriptRunner(state.scripts, is_img2img=True)}
    for ext in state.extensions:  # failures were logged when they happened
        for warning in ext.warnings:
            log.warning("extension %s: %s", ext.name, warning)
