"""Test helpers: A1111-style extension scripts written to temporary folders and loaded into a state
the way the loader does it (scripts.loading + import by path), without the loader itself."""

from __future__ import annotations

import argparse
import importlib.util
import textwrap
from pathlib import Path

from webui import compat
from webui.extensions.scripts import create_runners, loading
from webui.options import Options
from webui.state import SharedState


class FakeModels:
    """One model, whatever checkpoint is asked for."""

    def __init__(self, model=None):
        self.model = model

    def current(self):
        return self.model

    def switch(self, name):
        return self.model


def make_state(tmp_path: Path, model=None) -> SharedState:
    flags = argparse.Namespace(data_dir=tmp_path, ckpt=None, disable_nan_check=False)
    return SharedState(flags, Options(tmp_path / "config.json"), FakeModels(model))


def write_extension(root: Path, name: str, scripts: dict[str, str], files: dict[str, str] | None = None) -> Path:
    """extensions/<name>/scripts/<file> for each source (dedented), plus other files of the extension."""
    folder = root / name
    (folder / "scripts").mkdir(parents=True, exist_ok=True)
    for filename, source in scripts.items():
        (folder / "scripts" / filename).write_text(textwrap.dedent(source), encoding="utf-8")
    for filename, source in (files or {}).items():
        (folder / filename).parent.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


def load_extension(state: SharedState, folder: Path) -> dict:
    """Import every scripts/*.py of `folder` into `state` and rebuild the runners; the modules by file stem."""
    compat.install()
    compat.bind(state)
    modules = {}
    for path in sorted((folder / "scripts").glob("*.py")):
        with loading(path, folder):
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        state.scripts.add_module(module, path, folder, folder.name)
        modules[path.stem] = module
    create_runners(state)
    return modules
