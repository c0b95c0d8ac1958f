"""Evaluation, the paper's way, as pure statistics over JSONL: Elo from pairwise judgments, the
harmlessness-vs-helpfulness plot, labeler calibration, red-team prompt deduplication, and Goodhart monitors
over generated data. Jobs that call a model (red-team generation, gold scoring) live in `caitool.tasks`.

One module, one job (each documented in its docstring; the formats in docs/evaluation.md):

- `judgments`        reading pairwise judgment rows (`{"criterion", "model_a", "model_b", "p_a" | "winner"}`);
- `elo`              Bradley–Terry fit (minorize–maximize), Elo scale, bootstrap intervals; pure Python;
- `plot`             matplotlib figures (Elo vs Elo per model family, calibration); matplotlib is imported
                     inside the functions that draw (the `plot` extra);
- `stats`            per-principle statistics and Goodhart monitors over traces and policy samples;
- `dedup`            exact and near-duplicate removal (character n-gram MinHash), diversity report;
- `red_team`         red-team seed prompts and the deduplication pass over generated ones;
- `gold`             gold sets for `eval-labeler` (the paper's eval format, preference pairs) and their rows;
- `labeler_metrics`  accuracy, calibration/ECE, position-flip rate, length bias from per-item probabilities.

Nothing here imports a model client, the runner or the retry layer (tests/test_layering.py checks it).
"""
