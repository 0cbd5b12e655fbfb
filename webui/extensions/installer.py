"""Running extensions' install.py: once per change, in a subprocess, never able to change the
packages the WebUI itself needs.

Every pip that an install.py runs obeys a constraints file (PIP_CONSTRAINT) pinning the installed
versions of the WebUI's own packages. A requirement that would change one of them fails that
install.py, not the WebUI. When only an optional extra of a requirement asked for the change
(sd-dynamic-prompts' `dynamicprompts[magicprompt]` wants transformers<5), the requirement is
installed without that extra and install.py runs once more: the extension loads, less that extra,
and its row in the Extensions tab says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import site
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .loader import ROOT, Extension, extensions_dir

log = logging.getLogger(__name__)

# Packages the WebUI cannot work without, besides those pyproject.toml names: an extension's install.py
# may not change any of them (sd-dynamic-prompts' once downgraded transformers, and no model loaded).
PROTECTED_PACKAGES = ("torchvision", "torchaudio", "huggingface_hub", "tokenizers", "gradio_client", "starlette",
                      "pydantic")


def stamp_file(flags) -> Path:
    """Which install.py ran successfully, and against what (see run_installers)."""
    return extensions_dir(flags) / ".installed.json"


def protected_versions() -> dict[str, str]:
    """Installed version of every package the WebUI needs (pyproject.toml's dependencies and PROTECTED_PACKAGES)."""
    import importlib.metadata
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]]
    versions = {}
    for name in [*names, *PROTECTED_PACKAGES]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_installers(extensions: list[Extension], stamps: Path | None = None) -> None:
    """Run each active extension's install.py, with the output shown as it comes.

    With `stamps` (a JSON file), an install.py that succeeded is run again only when it, the
    extension's requirements*.txt or the Python environment (its site-packages folders) changed;
    without, every time, as A1111 does. A failure is logged and kept in `install_error`."""
    done = _read_stamps(stamps)
    environment = _environment()
    succeeded = []
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "webui-constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in protected_versions().items()),
                               encoding="utf-8")
        for ext in extensions:
            if not ext.active or not (ext.path / "install.py").is_file():
                continue
            if stamps is not None and done.get(ext.name) == _install_key(ext, environment):
                succeeded.append(ext)
                continue
            done.pop(ext.name, None)
            if run_installer(ext, constraints):
                succeeded.append(ext)
    if stamps is not None:
        environment = _environment()  # what the installers just installed changed it
        done.update({ext.name: _install_key(ext, environment) for ext in succeeded})
        try:
            stamps.parent.mkdir(parents=True, exist_ok=True)
            stamps.write_text(json.dumps(done, indent=1), encoding="utf-8")
        except OSError as error:
            log.warning("cannot record extension installs in %s: %s", stamps, error)


def run_installer(ext: Extension, constraints: Path | None = None) -> bool:
    """`python install.py` in the extension's folder, with the project importable (`import launch`);
    `constraints`: a pip constraints file every pip it runs obeys (PIP_CONSTRAINT)."""
    env = _environment_for_pip(constraints)
    code, output = _run(ext, [sys.executable, "install.py"], env, f"Running install.py of extension {ext.name}")
    if code != 0 and constraints is not None:
        without = _extras_to_drop(output, set(protected_versions()))
        if without and _install_without_extras(ext, without, output, env):
            code, output = _run(ext, [sys.executable, "install.py"], env, f"Running install.py of {ext.name} again")
    ext.install_output = output
    if code != 0:
        last = output.strip().splitlines()[-1:] or [""]
        ext.install_error = f"install.py failed (exit code {code}): {last[0]}"
        refused = sorted(_refused_packages(output))
        if refused:
            ext.install_error = (f"install.py asked for other versions of {', '.join(refused)}, which the WebUI needs "
                                 f"as installed; refused (the extension loads without them)")
        log.error("extension %s: %s", ext.name, ext.install_error)
        return False
    ext.install_error = None
    return True


def _environment_for_pip(constraints: Path | None) -> dict[str, str]:
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if constraints is not None:
        env["PIP_CONSTRAINT"] = " ".join(filter(None, [os.environ.get("PIP_CONSTRAINT"), str(constraints)]))
    return env


def _run(ext: Extension, command: list[str], env: dict[str, str], title: str) -> tuple[int, str]:
    """Run `command` in the extension's folder, echoing its output; the exit code and the output's end."""
    print(title, flush=True)
    tail: deque[str] = deque(maxlen=200)
    try:
        process = subprocess.Popen(command, cwd=ext.path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in process.stdout:
            print(f"[{ext.name}] {line}", end="", flush=True)
            tail.append(line)
        return process.wait(), "".join(tail)
    except OSError as error:
        return -1, str(error)


def _refused_packages(pip_output: str) -> set[str]:
    """The WebUI's own packages pip could not change for an install.py: named as constraints in a conflict,
    or as a requirement no version of which fits (the only one allowed being the installed one)."""
    names = set(re.findall(r"The user requested \(constraint\) ([\w.-]+)==", pip_output))
    wanted = re.findall(r"(?:satisfies the requirement|No matching distribution found for) ([\w.-]+)", pip_output)
    protected = {_canonical(name) for name in protected_versions()}
    return names | {name for name in wanted if _canonical(name) in protected}


@dataclass(frozen=True)
class ExtraToDrop:
    """One extra of a requirement that asked for another version of a protected package."""
    requirement: str  # the project, as pip named it
    extras: tuple[str, ...]  # all the extras asked for
    extra: str  # the one that conflicts
    package: str  # the protected package it wanted changed
    version: str | None  # the version pip tried, when it said


# pip's two ways of naming the requirement behind a conflict (pip 23 to 26):
#   "    dynamicprompts[magicprompt] 0.31.0 depends on transformers<5; extra == "magicprompt""
#   "... satisfies the requirement transformers[torch]<5; extra == "magicprompt" (from dynamicprompts[magicprompt])"
_DEPENDS_ON = re.compile(r'^\s*([\w.-]+)\[([^\]]+)\] (\S+) depends on ([\w.-]+)[^;\n]*; extra == "([\w.-]+)"', re.M)
_FROM = re.compile(r'requirement ([\w.-]+)[^;\n]*; extra == "([\w.-]+)" \(from ([\w.-]+)\[([^\]]+)\]')


def _extras_to_drop(pip_output: str, protected: set[str]) -> list[ExtraToDrop]:
    protected = {_canonical(name) for name in protected}
    found = [ExtraToDrop(name, _split(extras), extra, package, version)
             for name, extras, version, package, extra in _DEPENDS_ON.findall(pip_output)]
    found += [ExtraToDrop(name, _split(extras), extra, package, None)
              for package, extra, name, extras in _FROM.findall(pip_output)]
    return [drop for drop in found if _canonical(drop.package) in protected]


def _install_without_extras(ext: Extension, drops: list[ExtraToDrop], pip_output: str, env: dict[str, str]) -> bool:
    """pip install each requirement again without the extras that conflict; False when that fails too."""
    requirements, notes = [], []
    for name in dict.fromkeys(drop.requirement for drop in drops):
        mine = [drop for drop in drops if drop.requirement == name]
        dropped = {drop.extra for drop in mine}
        kept = [extra for extra in mine[0].extras if extra not in dropped]
        requirements.append(f"{name}{'[' + ','.join(kept) + ']' if kept else ''}{_specifier(name, mine, pip_output)}")
        notes.append(f"installed {name} without its extra {', '.join(sorted(dropped))}: it needs another version "
                     f"of {', '.join(sorted({drop.package for drop in mine}))}, which the WebUI needs as installed")
    code, _ = _run(ext, [sys.executable, "-m", "pip", "install", *requirements], env,
                   f"Installing {', '.join(requirements)} for {ext.name}, without the extras that conflict")
    if code != 0:
        log.error("extension %s: installing %s failed too", ext.name, ", ".join(requirements))
        return False
    for note in notes:
        log.warning("extension %s: %s", ext.name, note)
    ext.warnings.extend(notes)
    return True


def _specifier(name: str, drops: list[ExtraToDrop], pip_output: str) -> str:
    """The version range install.py asked for ("Collecting name[extras]~=0.31.0"), else the version pip tried."""
    asked = re.search(rf"^Collecting {re.escape(name)}(?:\[[^\]]*\])?([^\s(]+)", pip_output, re.M)
    if asked:
        return asked.group(1)
    version = next((drop.version for drop in drops if drop.version), None)
    return f"=={version}" if version else ""


def _split(extras: str) -> tuple[str, ...]:
    return tuple(extra.strip() for extra in extras.split(",") if extra.strip())


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_stamps(path: Path | None) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _environment() -> str:
    """Python and the state of its package folders: installing or removing a package changes
    the folder's modification time."""
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    times = [str(os.stat(folder).st_mtime_ns) for folder in folders if os.path.isdir(folder)]
    return "|".join([sys.executable, *times])


def _install_key(ext: Extension, environment: str) -> str:
    digest = hashlib.sha256(environment.encode())
    for file in [ext.path / "install.py", *sorted(ext.path.glob("requirements*.txt"))]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()
