"""The parser package stays pure, and its command line shows schedules."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "prompt_parser", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout


def test_package_imports_no_torch():
    code = "import sys, prompt_parser; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "False"
    for source in (ROOT / "prompt_parser").glob("*.py"):
        assert "import torch" not in source.read_text(), source


def test_cli_prints_schedule_with_weights():
    out = run_cli("a (red:1.3) [cat:dog:0.5] <lora:film:0.8>", "--steps", "20")
    assert "steps 1-10: 'a '  'red'x1.3  ' cat'" in out
    assert "steps 11-20: 'a '  'red'x1.3  ' dog'" in out
    assert "extra network: lora film:0.8" in out


def test_cli_json_hires_and_and_parts():
    data = json.loads(run_cli("[a:b:1.5] AND c:0.5", "--steps", "20", "--hires-steps", "10", "--json"))
    assert data["steps"] == 10
    assert [p["weight"] for p in data["parts"]] == [1.0, 0.5]
    assert [(e["end_step"], e["text"]) for e in data["parts"][0]["schedule"]] == [(5, "a"), (10, "b")]


def test_cli_reads_stdin_and_negative():
    data = json.loads(run_cli("--negative", "--json", "--steps", "4", stdin="x AND y"))
    assert [e["text"] for e in data["parts"][0]["schedule"]] == ["x AND y"]
