"""launch.py: requirement checks, TORCH_COMMAND handling, and the start command."""

import subprocess
import sys
from pathlib import Path

import launch

ROOT = Path(__file__).resolve().parents[1]


def test_declared_requirements_cover_the_stack():
    names = {req.name for req in launch.declared_requirements(with_tests=False)}
    assert {"torch", "diffusers", "transformers", "gradio", "safetensors", "pillow", "lark"} <= names
    test_names = {req.name for req in launch.declared_requirements(with_tests=True)} - names
    assert {"pytest", "hypothesis"} <= test_names


def test_is_satisfied_checks_versions():
    from packaging.requirements import Requirement

    assert launch.is_satisfied(Requirement("lark>=1.0"))
    assert not launch.is_satisfied(Requirement("lark>=999"))
    assert not launch.is_satisfied(Requirement("no-such-package-here"))


def test_torch_command_pip_runs_with_this_python():
    assert launch.pip_command("pip install torch==2.13.0") == [sys.executable, "-m", "pip", "install", "torch==2.13.0"]
    assert launch.pip_command("conda install pytorch") == "conda install pytorch"


def test_start_says_what_is_not_built_yet():
    result = subprocess.run(
        [sys.executable, "launch.py", "--skip-install"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 2
    assert "not built yet" in result.stdout
