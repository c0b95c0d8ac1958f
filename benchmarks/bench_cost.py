"""USD per 1,000 SL-CAI records (critique-revise, 4 rounds) and per 1,000 labels (label-pairs), per cost tier,
with and without prompt caching: tokens from the fake server's usage accounting, dollars from caitool's
price table (caitool/prices.toml; openai/gpt-4o-mini by default).

Each command runs once over real HTTP against the fake server with its prompt cache on (OpenAI's automatic
prefix caching: the longest earlier-seen prefix of whole messages, in 128-token steps, at least
`--cache-min-tokens` long). The server counts every answered request's input, output and cached input
tokens; the same tokens are then priced at each tier (a tier changes the price, not the tokens) without
caching (every input token at the input price) and with it (cached tokens at the cached-input price).

The fake's answers are one fixed text of about 150 tokens (`--reply-chars`), so output tokens are of a
realistic size; real answers vary. Label answers are one token with log-probs, as the paper's labels are.

    python benchmarks/bench_cost.py                       # 100 records and 200 labels, scaled to 1,000
    python benchmarks/bench_cost.py --cache-min-tokens 0 --json benchmarks/results/cost.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import REPO, Server, client_env, loadavg, workdir, write_records

from caitool.pricing import TIERS, Price, price_for
from caitool.providers.base import Usage

ANSWER = " ".join(["The response should decline the harmful part and explain why, kindly."] * 9)


def _command(kind: str, src: Path, out: Path, base_url: str, model: str) -> list[str]:
    common = ["-o", str(out), "--overwrite", "-m", model, "--base-url", base_url, "-q", "-c", "16"]
    if kind == "sl-cai":
        return ["critique-revise", str(src), *common, "--rounds", "4", "--max-tokens", "256"]
    return ["label-pairs", str(src), *common]


def measure(kind: str, records: int, model: str, cache_min_tokens: int, reply_chars: int) -> dict[str, Any]:
    with Server(seed=1) as server, workdir() as tmp:
        server.reset(
            prompt_cache=True,
            prompt_cache_min_tokens=cache_min_tokens,
            reply_text=(ANSWER * 4)[:reply_chars],
            answer_logprobs={" A": -0.4, " B": -1.1},
        )
        src = write_records(tmp / "in.jsonl", records)
        cmd = [
            sys.executable,
            "-m",
            "caitool",
            *_command(kind, src, tmp / "out.jsonl", server.openai_base_url, model),
        ]
        proc = subprocess.run(cmd, env=client_env(), cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{kind}: caitool exited {proc.returncode}: {proc.stderr[-2000:]}")
        billed = server.stats()["usage"]["default"]
    return {
        "kind": kind,
        "records": records,
        "requests": billed["requests"],
        "input_tokens": billed["input_tokens"],
        "output_tokens": billed["output_tokens"],
        "cached_input_tokens": billed.get("cached_input_tokens", 0),
    }


def per_thousand(row: dict[str, Any], price: Price) -> dict[str, dict[str, float]]:
    """USD per 1,000 records at each tier the price has: without and with prompt caching."""
    scale = 1000 / row["records"]
    usage = Usage(row["input_tokens"], row["output_tokens"], row["requests"], row["cached_input_tokens"])
    out: dict[str, dict[str, float]] = {}
    for tier in TIERS:
        if price.has_tier(tier):
            out[tier] = {
                "no_cache": round(price.cost(usage, tier, cached_input_tokens=0) * scale, 4),
                "prompt_cache": round(price.cost(usage, tier) * scale, 4),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="openai/gpt-4o-mini")
    ap.add_argument("--records", type=int, default=100, help="SL-CAI records (labels: twice as many)")
    ap.add_argument("--cache-min-tokens", type=int, default=1024, help="OpenAI caches prefixes >= 1,024")
    ap.add_argument("--reply-chars", type=int, default=600)
    ap.add_argument("--json", help="append the results to this JSONL file")
    args = ap.parse_args()
    price = price_for(args.model)
    if price is None:
        raise SystemExit(f"no price for {args.model} in caitool/prices.toml")
    rows = [
        measure("sl-cai", args.records, args.model, args.cache_min_tokens, args.reply_chars),
        measure("labels", 2 * args.records, args.model, args.cache_min_tokens, args.reply_chars),
    ]
    print(
        f"{args.model}: USD/M input {price.input}, cached input {price.cached_input}, output {price.output};"
    )
    print(f"tier factors {dict(price.tier_factors)}; prompt-cache minimum {args.cache_min_tokens} tokens\n")
    print("| per 1,000 | requests | input tok | cached share | " + " | ".join(
        f"{t} no cache | {t} cached" for t in TIERS if price.has_tier(t)) + " |")  # fmt: skip
    for row in rows:
        usd = per_thousand(row, price)
        row.update(
            usd_per_1000=usd,
            model=args.model,
            cache_min_tokens=args.cache_min_tokens,
            reply_chars=args.reply_chars,
            price={"input": price.input, "output": price.output, "cached_input": price.cached_input,
                   "tier_factors": dict(price.tier_factors)},
            loadavg=loadavg(),
        )  # fmt: skip
        scale = 1000 / row["records"]
        share = row["cached_input_tokens"] / max(1, row["input_tokens"])
        cells = " | ".join(f"${v['no_cache']:.4f} | ${v['prompt_cache']:.4f}" for v in usd.values())
        print(
            f"| {row['kind']} | {row['requests'] * scale:,.0f} | {row['input_tokens'] * scale:,.0f} | "
            f"{share:.1%} | {cells} |"
        )
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
