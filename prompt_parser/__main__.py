"""Show how a prompt is read: `python -m prompt_parser "a [cat:dog:0.5]" --steps 20`."""

from __future__ import annotations

import argparse
import json
import sys

from . import attention_runs, parse_prompt


def _runs(text: str) -> str:
    return "  ".join(f"{run!r}" if weight == 1.0 else f"{run!r}x{weight:g}" for run, weight in attention_runs(text))


def describe(schedule) -> str:
    lines = [f"{schedule.steps} steps"]
    for number, part in enumerate(schedule.parts, 1):
        if len(schedule.parts) > 1 or part.weight != 1.0:
            lines.append(f"AND part {number}, weight {part.weight:g}:")
        start = 1
        for entry in part.schedule:
            span = f"step {start}" if start == entry.end_step else f"steps {start}-{entry.end_step}"
            lines.append(f"  {span:>13}: {_runs(entry.text)}")
            start = entry.end_step + 1
    for network in schedule.extra_networks:
        lines.append(f"extra network: {network.kind} {':'.join(network.items)}")
    return "\n".join(lines)


def as_json(schedule) -> dict:
    return {
        "steps": schedule.steps,
        "parts": [
            {
                "weight": part.weight,
                "schedule": [
                    {"end_step": e.end_step, "text": e.text, "attention": attention_runs(e.text)}
                    for e in part.schedule
                ],
            }
            for part in schedule.parts
        ],
        "extra_networks": [{"kind": n.kind, "items": n.items} for n in schedule.extra_networks],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prompt_parser", description=__doc__)
    parser.add_argument("prompt", nargs="?", help="the prompt; read from stdin when left out")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (denoiser calls)")
    parser.add_argument("--hires-steps", type=int, help="schedule the hires-fix second pass of this many steps")
    parser.add_argument("--old-timelines", action="store_true", help='"Use old prompt editing timelines"')
    parser.add_argument("--negative", action="store_true", help="read it as a negative prompt (no AND, no tags)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    prompt = sys.stdin.read() if args.prompt is None else args.prompt
    schedule = parse_prompt(
        prompt, args.steps, args.hires_steps, old_timelines=args.old_timelines, negative=args.negative
    )
    print(json.dumps(as_json(schedule), indent=2) if args.json else describe(schedule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
