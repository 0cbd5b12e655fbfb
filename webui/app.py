"""Start the WebUI server.

Not built yet: the generation core (issue 3) and the WebUI/API (issue 5) fill this in.
Until then `python launch.py` says so, and the prompt parser can be tried on its own.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    print(
        "The WebUI server is not built yet: this checkout has the prompt parser only.\n"
        "Try it: python -m prompt_parser \"a (red:1.3) [cat:dog:0.5]\" --steps 20\n"
        "Run the tests: python launch.py --test"
    )
    return 2
