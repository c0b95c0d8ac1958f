"""A tiny chat model built offline, from a config and a tokenizer trained on the spot: no hub, no download.

For tests, examples and trying the training commands on any machine: `python -m caitool.testing.tiny_model
DIR` writes a 2-layer Qwen2 (hidden size 32, ~35k parameters) with a byte-level BPE tokenizer (vocab 512),
eos `<|im_end|>`, pad `<|pad|>`, and a ChatML template with `{% generation %}` markers (for assistant-only
loss). It learns nothing useful; it makes every trainer run for real in seconds on a CPU.
Needs the `train` extra (torch, transformers, tokenizers).
"""

from __future__ import annotations

import sys
from pathlib import Path

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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m caitool.testing.tiny_model DIR", file=sys.stderr)  # noqa: T201
        return 2
    build_tiny_model(Path(argv[0]))
    print(argv[0])  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
