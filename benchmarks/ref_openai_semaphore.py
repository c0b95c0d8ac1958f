"""The bare reference client: `openai.AsyncOpenAI` + `asyncio.Semaphore(C)`, nothing else.

What a user would write in twenty lines: one coroutine per record gathered up front, each holding a
semaphore slot while it makes `--chain` sequential chat calls (3 = critique-revise's initial → critique →
revision with 1 round), each call's messages growing by the previous answer, like the real chain. SDK
retries are off (`max_retries=0`), as in caitool, so both send exactly the same number of HTTP requests.
No output file, no retries, no rate limiting, no progress: the floor that caitool's CPU per request is
compared with.

Prints one JSON line: records, requests, ok, errors, wall_s (request phase as the client sees it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import openai


async def run(args: argparse.Namespace) -> dict[str, object]:
    client = openai.AsyncOpenAI(
        base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=args.timeout
    )
    sem = asyncio.Semaphore(args.concurrency)
    ok = errors = 0
    # Calls from --context-from on carry a context like caitool's few-shot examples: --context-messages
    # turns, alternating user/assistant, --pad-chars in all (the SDK's per-request cost grows with turns).
    lp = {"logprobs": True, "top_logprobs": args.logprobs} if args.logprobs else {}
    k = max(1, args.context_messages)
    context = [
        {"role": "user" if j % 2 == 0 else "assistant", "content": "x" * (args.pad_chars // k)}
        for j in range(k if args.pad_chars else 0)
    ]

    async def record(i: int) -> None:
        nonlocal ok, errors
        async with sem:
            messages = [{"role": "user", "content": f"benchmark question {i}: why is the sky blue?"}]
            for step in range(args.chain):
                sent: Any = messages if step < args.context_from else [*context, *messages]
                try:
                    r = await client.chat.completions.create(
                        model=args.model, messages=sent, max_tokens=args.max_tokens, temperature=1.0, **lp
                    )
                    text = r.choices[0].message.content or ""
                    ok += 1
                except openai.OpenAIError:
                    errors += 1
                    return
                messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "next"}]

    t0 = time.perf_counter()
    await asyncio.gather(*(record(i) for i in range(args.n)))
    wall = time.perf_counter() - t0
    await client.close()
    return {
        "client": "openai.AsyncOpenAI+Semaphore",
        "records": args.n,
        "requests": args.n * args.chain,
        "ok": ok,
        "errors": errors,
        "wall_s": round(wall, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", default="bench-model")
    p.add_argument("--n", type=int, default=1000, help="records")
    p.add_argument("--chain", type=int, default=3, help="sequential calls per record")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--pad-chars", type=int, default=0, help="context characters on calls after the first")
    p.add_argument("--context-messages", type=int, default=1, help="context turns on calls after the first")
    p.add_argument(
        "--context-from", type=int, default=1, help="first call (0-based) that carries the context"
    )
    p.add_argument("--logprobs", type=int, default=0, help="ask for top-K log-probs (label-pairs does, K=20)")
    p.add_argument("--timeout", type=float, default=120.0)
    print(json.dumps(asyncio.run(run(p.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
