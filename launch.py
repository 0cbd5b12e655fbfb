"""The one entry point: install what is missing, then start the WebUI or run the tests.

    python launch.py                  start the WebUI
    python launch.py --test [ARGS]    run the test suite; ARGS go to pytest
    python launch.py --skip-install   either of the above without installing anything

Dependencies (pyproject.toml) are installed into the Python environment that runs this
script; run it from a virtual environment to keep them apart. torch is installed first,
by the command in the TORCH_COMMAND environment variable when it is set (as in A1111),
for example TORCH_COMMAND="pip install torch==2.14.1 torchvision==0.29.1".
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
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


def run_step(command: list[str] | str, what: str) -> None:
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
        default = f'pip install "{torch}" torchvision'  # a matching pair, as A1111 installs them
        run_step(pip_command(os.environ.get("TORCH_COMMAND", default)), "installing torch")
        importlib.invalidate_caches()
        if not is_satisfied(torch):
            sys.exit(f"launch.py: TORCH_COMMAND did not install {torch}")
    missing = [str(req) for req in requirements if not is_satisfied(req)]
    if missing:
        run_step([sys.executable, "-m", "pip", "install", *missing], "installing dependencies")


# -- A1111's `launch` module, as extensions' install.py use it: `import launch;
# if not launch.is_installed("pkg"): launch.run_pip("install pkg", "pkg")` --------------------------

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"


def is_installed(package: str) -> bool:
    """Whether a distribution (or, failing that, an importable module) of that name exists."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def run(command: str, desc: str | None = None, errdesc: str | None = None, custom_env: dict | None = None,
        live: bool = True) -> str:
    """A1111's run: a shell command; its output (when not `live`); RuntimeError when it fails."""
    if desc is not None:
        print(desc, flush=True)
    captured = {} if live else {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    result = subprocess.run(command, shell=True, env=os.environ if custom_env is None else custom_env,
                            encoding="utf8", errors="ignore", **captured)
    if result.returncode != 0:
        bits = [f"{errdesc or 'Error running command'}.", f"Command: {command}", f"Error code: {result.returncode}"]
        bits += [f"{name}: {text}" for name, text in (("stdout", result.stdout), ("stderr", result.stderr)) if text]
        raise RuntimeError("\n".join(bits))
    return result.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = True) -> str | None:
    """`python -m pip <command>` with this Python (A1111's helper for install.py)."""
    if "--skip-install" in sys.argv:
        return None
    index = f" --index-url {index_url}" if index_url else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index}', desc=f"Installing {desc}",
               errdesc=f"Couldn't install {desc}", live=live)


def repo_dir(name: str) -> str:
    return str(ROOT / dir_repos / name)


def _git_output(*words: str) -> str:
    try:
        return subprocess.check_output([git, *words], cwd=ROOT, text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "<none>"


def commit_hash() -> str:
    return _git_output("rev-parse", "HEAD")


def git_tag() -> str:
    return _git_output("describe", "--tags")


def git_clone(url: str, directory: str, name: str, commithash: str | None = None) -> None:
    if not os.path.exists(directory):
        run(f'"{git}" clone "{url}" "{directory}"', f"Cloning {name} into {directory}...", f"Couldn't clone {name}")
    if commithash is not None:
        run(f'"{git}" -C "{directory}" checkout {commithash}', None, f"Couldn't checkout {name}'s hash: {commithash}")


def __getattr__(name: str):
    """`launch.args`: the WebUI's flags as given on this command line (install.py gets none)."""
    if name == "args":
        sys.path.insert(0, str(ROOT))
        from webui.flags import parse_flags

        return parse_flags(sys.argv[1:], known_only=True)
    raise AttributeError(f"module 'launch' has no attribute {name!r}")


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

    # The WebUI reads --skip-install too: it also skips extensions' install.py.
    return start_webui(rest + ["--skip-install"] * skip_install)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
