"""Build the bundled CLIP tokenizer files (vocab.json, merges.txt) from CLIP's BPE data.

    python tools/make_clip_tokenizer.py [PATH_TO_bpe_simple_vocab_16e6.txt.gz]

Without a path, the data file is taken from the open-clip-torch wheel, fetched with
`pip download --no-deps` (the package is not installed). Every Stable Diffusion text
encoder (SD1 CLIP-L, SD2 OpenCLIP-H, both SDXL encoders) uses this one vocabulary; the
files are written to webui/models/clip_tokenizer/ and committed, so the WebUI never needs
the network for them.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "webui" / "models" / "clip_tokenizer"
WHEEL = "open-clip-torch==3.3.0"
DATA_IN_WHEEL = "open_clip/bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408  # 256 bytes, 256 end-of-word bytes, the merges, two special tokens


def byte_symbols() -> list[str]:
    """GPT-2's reversible byte -> printable character map, in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    codes = printable + [256 + n for n in range(len(others))]
    return [chr(code) for code in codes]


def fetch_data() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(DATA_IN_WHEEL)


def build(data_gz: bytes) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(data_gz).decode("utf-8").split("\n")
    symbols = byte_symbols()
    merges = lines[1 : 1 + VOCAB_SIZE - 2 * len(symbols) - 2]  # line 0 is a header
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == VOCAB_SIZE, len(tokens)
    return {token: i for i, token in enumerate(tokens)}, merges


def main() -> None:
    data = Path(sys.argv[1]).read_bytes() if len(sys.argv) > 1 else fetch_data()
    vocab, merges = build(data)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {OUT}")


if __name__ == "__main__":
    main()
