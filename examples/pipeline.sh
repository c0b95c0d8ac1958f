#!/usr/bin/env bash
# The whole Constitutional AI pipeline on a CPU in minutes, offline:
#   critique-revise -> sft -> sample-pairs -> label-pairs -> train-pm -> rl (grpo)
# Data comes from the embedded SmolLM2-135M-Instruct model; training runs on a tiny model built on the spot
# (caitool.testing.tiny_model), so every trainer really runs but nothing here is a useful model.
# Swap --model / --policy for real ones (a vLLM server, a hub checkpoint) to do it for real.
#
# usage: examples/pipeline.sh [WORKDIR]      (needs the local and train extras: `make setup-dev`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-pipeline-output}
caitool=${CAITOOL:-caitool}
python=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$work"
prompts="$here/red_team_prompts.jsonl"

step() { printf '\n== %s\n' "$*" >&2; }

step "tiny model for training"
"$python" -m caitool.testing.tiny_model "$work/tiny-model" >/dev/null

step "SL-CAI data: critique -> revision on the embedded model"
"$caitool" critique-revise "$prompts" --limit 4 --rounds 1 --max-tokens 48 \
    --format sft --keep-rounds -o "$work/sl-cai.jsonl"

step "SL-CAI: supervised fine-tuning on the revisions"
"$caitool" sft "$work/sl-cai.jsonl" --model "$work/tiny-model" -o "$work/sft" \
    --max-steps 3 --batch-size 2 --overwrite

step "RL-CAI data: response pairs from the policy, AI labels from the feedback model"
"$caitool" sample-pairs "$prompts" --limit 4 -k 2 --max-tokens 32 -o "$work/pairs.jsonl"
"$caitool" label-pairs "$work/pairs.jsonl" --both-orders -o "$work/prefs.jsonl"

step "preference model on the soft labels"
"$caitool" train-pm "$work/prefs.jsonl" --model "$work/tiny-model" -o "$work/pm" \
    --max-steps 3 --batch-size 2 --overwrite

step "RL against the preference model"
"$caitool" rl "$prompts" --policy "$work/sft" --reward "$work/pm" --algo grpo -o "$work/rl" \
    --max-steps 2 --batch-size 2 --config "$here/rl-tiny.json" --overwrite

step "done: $work/rl holds the RL-CAI policy; manifests in each directory"
