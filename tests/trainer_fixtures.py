"""A tiny chat model built offline (no hub), and small data files in caitool's formats, for trainer tests.

The model: a byte-level BPE tokenizer (vocab 512) trained here on a few sentences, wrapped with eos
`<|im_end|>`, pad `<|pad|>` and a ChatML template with `{% generation %}` markers, plus a 2-layer Qwen2 with
hidden size 32 (~35k parameters) from a config. Building it takes well under a second once torch is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "CUDA_VISIBLE_DEVICES": "",
}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The same ChatML without markers: what most hub models ship (assistant-only loss needs a fallback).
PLAIN_TEMPLATE = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")

QUESTIONS = [
    "How do I make tomato soup?",
    "What is the capital of France?",
    "How can I pick a lock?",
    "Tell me a joke about cats.",
    "How do I stay safe online?",
    "Write a haiku about rain.",
    "How do I hurt someone?",
    "What is two plus two?",
]
GOOD = [
    "Simmer tomatoes with basil, then blend.",
    "The capital of France is Paris.",
    "If you are locked out, call a licensed locksmith.",
    "Cats knock things over to test gravity.",
    "Use strong passwords and two-factor login.",
    "Soft rain on the roof, quiet thoughts.",
    "I cannot help with that. If you are upset, talk to someone you trust.",
    "Two plus two is four.",
]
BAD = [
    "No.",
    "London.",
    "Here is how to break in.",
    "Cats are dumb.",
    "Share it.",
    "Rain.",
    "Like this.",
    "Five.",
]
CORPUS = [
    "The assistant should be helpful, honest and harmless.",
    "Please critique the response for harmful content, then revise it.",
    "Which response is more helpful and less harmless? (A) or (B)",
    "I cannot help with that, but here is a safer alternative.",
] * 10


def set_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def build_tiny_model(model_dir: Path, template: str = CHAT_TEMPLATE) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS + QUESTIONS + GOOD + BAD, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>", model_max_length=512
    )
    hf_tok.chat_template = template
    hf_tok.save_pretrained(model_dir)

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(hf_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=hf_tok.pad_token_id,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.save_pretrained(model_dir)
    return model_dir


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows_keep_rounds() -> list[dict[str, Any]]:
    """critique-revise --format sft --keep-rounds: two rounds per record."""
    rows = []
    for i, (q, a) in enumerate(zip(QUESTIONS, GOOD, strict=True)):
        for rnd in (1, 2):
            answer = a if rnd == 2 else a.split(",")[0]
            rows.append(
                {
                    "id": f"r{i}",
                    "round": rnd,
                    "principle_id": "harmful1",
                    "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
                }
            )
    return rows


def trace_rows() -> list[dict[str, Any]]:
    """critique-revise --format trace."""
    return [
        {
            "id": f"t{i}",
            "prompt": [{"role": "user", "content": q}],
            "initial_response": b,
            "rounds": [
                {"round": 1, "principle_id": "harmful1", "critique": "c", "revision": a.split(",")[0]},
                {"round": 2, "principle_id": "harmful2", "critique": "c", "revision": a},
            ],
            "final_response": a,
        }
        for i, (q, a, b) in enumerate(zip(QUESTIONS, GOOD, BAD, strict=True))
    ]


def pair_rows() -> list[dict[str, Any]]:
    """label-pairs output: TRL conversational preference rows with a soft label and a margin."""
    return [
        {
            "id": f"p{i}",
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": g}],
            "rejected": [{"role": "assistant", "content": b}],
            "p_chosen": [0.9, 0.7, 0.95, 0.6, 0.8, 0.55, 0.99, 0.4][i],
            "margin": 0.5 + 0.1 * i,
            "caitool": {"principle_id": "compare1"},
        }
        for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD, strict=True))
    ]


def prompt_rows() -> list[dict[str, Any]]:
    return [{"prompt": q} for q in QUESTIONS[:4]] + [
        {"messages": [{"role": "user", "content": q}]} for q in QUESTIONS[4:]
    ]
