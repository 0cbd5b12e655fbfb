"""launch.py: requirement checks, TORCH_COMMAND handling, and the start command."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_start_serves_the_page_and_the_api_at_once(tmp_path):
    """`python launch.py` answers before any model is loaded (here there is none at all)."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "launch.py", "--skip-install", "--api", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        page = None
        while time.perf_counter() - started < 120 and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                time.sleep(0.3)
        assert page is not None and page.status == 200, server.stdout.read() if server.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sdapi/v1/samplers", timeout=10) as reply:
            assert "DPM++ 2M" in [s["name"] for s in json.load(reply)]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"Running on http://127.0.0.1:{port}/" in output
