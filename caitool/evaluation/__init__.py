"""Evaluation, the paper's way: Elo from pairwise judgments, the harmlessness-vs-helpfulness plot, labeler
calibration, red-team prompt generation with deduplication, and Goodhart monitors over generated data.

One module, one job (each documented in its docstring; the formats in docs/evaluation.md):

- `judgments`        reading pairwise judgment rows (`{"criterion", "model_a", "model_b", "p_a" | "winner"}`);
- `elo`              Bradley–Terry fit (minorize–maximize), Elo scale, bootstrap intervals; pure Python;
- `plot`             matplotlib figures (Elo vs Elo per model family, calibration); matplotlib is imported
                     inside the functions that draw (the `plot` extra);
- `stats`            per-principle statistics and Goodhart monitors over traces and policy samples;
- `dedup`            exact and near-duplicate removal (character n-gram MinHash), diversity report;
- `red_team`         few-shot red-team prompt generation: templates, seed sampling, output cleaning;
- `gold`             gold sets for `eval-labeler` (the paper's eval format, preference pairs);
- `labeler_metrics`  accuracy, calibration/ECE, position-flip rate, length bias from per-item probabilities.

Nothing here imports a model SDK; the commands in `caitool.cli.evaluate` wire models in.
"""
