"""The one entry point: install what is missing, then start the WebUI or run the tests.

    python launch.py                  start the WebUI
    python launch.py --test [ARGS]    run the test suite; ARGS go to pytest
    python launch.py --skip-install   either of the above without installing anything

Dependencies (pyproject.toml) are installed into the Python environment that runs this
script; run it from a virtual environment to keep them apart. torch is installed first,
by the command in the TORCH_COMMAND environment variable when it is set (as in A1111),
for example TORCH_COMMAND="pip install torch==2.13.0" for a CPU-only machine.
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare environment: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent


def declared_requirements(with_tests: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = list(project["dependencies"])
    if with_tests:
        names += project["optional-dependencies"]["test"]
    return [req for req in map(Requirement, names) if req.marker is None or req.marker.evaluate()]


def is_satisfied(requirement: Requirement) -> bool:
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)


def run(command: list[str] | str, what: str) -> None:
    print(f"launch.py: {what}: {command if isinstance(command, str) else shlex.join(command)}", flush=True)
    result = subprocess.run(command, shell=isinstance(command, str), cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"launch.py: {what} failed (exit code {result.returncode}); see the output above")


def pip_command(command: str) -> list[str] | str:
    """A1111 runs TORCH_COMMAND as `python -m <command>`; do the same for pip commands."""
    words = shlex.split(command)
    return [sys.executable, "-m", *words] if words and words[0] == "pip" else command


def install_missing(with_tests: bool) -> None:
    requirements = declared_requirements(with_tests)
    torch = next(req for req in requirements if req.name == "torch")
    if not is_satisfied(torch):
        default = f'pip install "{torch}"'
        run(pip_command(os.environ.get("TORCH_COMMAND", default)), "installing torch")
        importlib.invalidate_caches()
        if not is_satisfied(torch):
            sys.exit(f"launch.py: TORCH_COMMAND did not install {torch}")
    missing = [str(req) for req in requirements if not is_satisfied(req)]
    if missing:
        run([sys.executable, "-m", "pip", "install", *missing], "installing dependencies")


def main(argv: list[str]) -> int:
    skip_install = "--skip-install" in argv
    testing = "--test" in argv
    rest = [arg for arg in argv if arg not in ("--skip-install", "--test")]
    if not skip_install:
        install_missing(with_tests=testing)
    if testing:
        return subprocess.call([sys.executable, "-m", "pytest", *rest], cwd=ROOT)
    sys.path.insert(0, str(ROOT))
    from webui.app import main as start_webui

    return start_webui(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
