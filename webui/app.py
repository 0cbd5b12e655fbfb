"""Start the WebUI server.

Not built yet: the WebUI/API issue fills this in. Until then `python launch.py` says so
and points to the command line, which runs the same generation code.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    print(
        "The WebUI server is not built yet. What works today:\n"
        "  generate from the command line: python -m webui.cli txt2img --prompt \"a cat\" (checkpoint in models/Stable-diffusion/)\n"
        "  see how a prompt is read: python -m prompt_parser \"a (red:1.3) [cat:dog:0.5]\" --steps 20\n"
        "  run the tests: python launch.py --test"
    )
    return 2
