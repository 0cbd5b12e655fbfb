"""Print how long the prompt parser takes on typical, long and hostile prompts.

    python benchmarks/prompt_parser_speed.py [--earley]

Times are for a full parse (tag extraction, AND split, schedule) of a prompt not seen
before, and for a repeated prompt (cached). `--earley` also times a literal Earley reading
of A1111's grammar (tests/earley_reference.lark), which is how A1111 parses, for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lark  # noqa: E402

from prompt_parser import attention_runs, parse_prompt  # noqa: E402
from prompt_parser.attention import attention_runs as cached_attention  # noqa: E402
from prompt_parser.scheduling import _parse  # noqa: E402

# About 75 CLIP tokens, with emphasis, one edit and one alternation.
TYPICAL = (
    "masterpiece, best quality, (portrait of a [young:old:0.4] woman:1.2), long flowing hair, "
    "detailed eyes, (soft lighting), [cat|dog] ears, in a garden full of flowers, sunset, bokeh, "
    "8k, highly detailed, sharp focus, <lora:film:0.7> by an oil painter, trending on artstation"
)
# About 500 CLIP tokens with nested editing and emphasis throughout.
LONG = ", ".join(
    [TYPICAL.replace("<lora:film:0.7> ", "")] * 5
    + ["[a [(red:1.2):blue:5] [castle:[ruin:(forest:0.8):0.7]:0.3]|a (bridge:1.1)]"] * 6
    + ["[winter:summer:0.5] landscape, (((dramatic clouds)))"] * 6
)
CASES = {
    "typical (~75 tokens)": TYPICAL,
    "long (~500 tokens, nested editing)": LONG,
    "100 edits in a row": "(a:1.1), [b:c:3], " * 100,
    "1000 nested brackets": "[" * 1000 + "a" + "]" * 1000,
    "1000 unclosed brackets": "[a:" * 1000,
}
# Earley needs minutes on these (about 100 s for "100 edits in a row" on a 2-core VM).
EARLEY_TOO_SLOW = {"100 edits in a row", "1000 nested brackets", "1000 unclosed brackets"}


def measure(function, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def earley_parse(parser: lark.Lark, prompt: str) -> None:
    try:
        parser.parse(prompt)
    except lark.exceptions.LarkError:  # A1111 then uses the prompt as plain text
        pass


def cold(prompt: str) -> None:
    _parse.cache_clear()
    cached_attention.cache_clear()
    schedule = parse_prompt(prompt, 20)
    for text in schedule.texts:
        attention_runs(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--earley", action="store_true", help="also time A1111's way (slow on long prompts)")
    args = parser.parse_args()
    earley = None
    if args.earley:
        grammar = (ROOT / "tests" / "earley_reference.lark").read_text()
        earley = lark.Lark(grammar, parser="earley", maybe_placeholders=True)

    print(f"python {sys.version.split()[0]}, lark {lark.__version__}; median times, 20 steps")
    print(f"{'prompt':38} {'chars':>6} {'parse':>10} {'cached':>10}" + (f" {'A1111 Earley':>13}" if earley else ""))
    for name, prompt in CASES.items():
        first = measure(lambda: cold(prompt), 15)
        again = measure(lambda: parse_prompt(prompt, 20), 15)
        line = f"{name:38} {len(prompt):>6} {first * 1e3:>8.2f}ms {again * 1e3:>8.3f}ms"
        if earley and name not in EARLEY_TOO_SLOW:
            line += f" {measure(lambda: earley_parse(earley, prompt), 3) * 1e3:>11.0f}ms"
        print(line)


if __name__ == "__main__":
    main()
