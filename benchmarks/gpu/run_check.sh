#!/usr/bin/env bash
# GPU check: train-pm (soft labels) then rl --algo grpo against that preference model, on the real
# SmolLM2-135M-Instruct weights, timed. Run on the lent device machine in two calls (the 98 MB GGUF file is
# over one call's 64 MiB transfer limit, so it travels in two parts; /tmp survives between warm calls):
#   1. stage:  carry .whl (wheels: trl, datasets, transformers 5.24, gguf, ...) and .dev1 (part 1)
#   2. run:    carry .dev2 (parts 2-3 and prefs.jsonl: 60 pairs labelled here by the embedded model)
# usage: bash benchmarks/gpu/run_check.sh stage|run
set -euo pipefail
mode=$1
if [ "$mode" = stage ]; then
    mkdir -p /tmp/cai && cp .dev1/smol.part00 /tmp/cai/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 -c "import trl, datasets, transformers, gguf, torch; print('trl', trl.__version__, 'datasets', datasets.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
    exit 0
fi
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true
out=${OUT:-/tmp/out}
mkdir -p "$out"
cat /tmp/cai/smol.part00 .dev2/smol.part01 .dev2/smol.part02 > /tmp/cai/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum /tmp/cai/SmolLM2-135M-Instruct.Q4_1.gguf
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 benchmarks/gpu/gguf_to_hf.py /tmp/cai/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/cai/smollm2-hf
t0=$(date +%s.%N)
python3 -m caitool train-pm .dev2/prefs.jsonl --model /tmp/cai/smollm2-hf -o /tmp/cai/pm --epochs 3 --batch-size 8 --overwrite
t1=$(date +%s.%N)
python3 -m caitool rl examples/red_team_prompts.jsonl --policy /tmp/cai/smollm2-hf --reward /tmp/cai/pm --algo grpo \
    -o /tmp/cai/rl --max-steps 10 --batch-size 8 --config benchmarks/gpu/rl-grpo.json --overwrite
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" <<'PY' | tee "$out/timing.json"
import json, sys
t0, t1, t2 = map(float, sys.argv[1:4])
print(json.dumps({"train_pm_wall_s": round(t1 - t0, 1), "rl_grpo_wall_s": round(t2 - t1, 1)}))
PY
cp /tmp/cai/pm/metrics.json "$out/pm-metrics.json"
cp /tmp/cai/pm/caitool-manifest.json "$out/pm-manifest.json"
cp /tmp/cai/rl/caitool-manifest.json "$out/rl-manifest.json"
