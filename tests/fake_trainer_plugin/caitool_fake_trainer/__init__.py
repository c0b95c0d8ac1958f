"""A fake trainer backend: counts the rows of its input and writes a small file instead of a model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from caitool.trainers.base import TrainJob, TrainResult


class FakeBackend:
    name = "fake"
    description = "test double: counts rows, trains nothing"

    def version(self) -> str | None:
        try:
            return version("caitool-fake-trainer")
        except PackageNotFoundError:
            return None

    def available(self) -> tuple[bool, str]:
        return True, "always"

    def run(self, job: TrainJob) -> TrainResult:
        rows = sum(1 for line in job.data.read_text().splitlines() if line.strip())
        if job.dry_run:
            return TrainResult(
                trained=False, data_rows=rows, metrics={"plan": {"backend": "fake", "rows": rows}}
            )
        job.output.mkdir(parents=True, exist_ok=True)
        (job.output / "fake-model.txt").write_text(f"{job.task} {job.model} {rows}\n")
        return TrainResult(metrics={"fake_rows": rows, "task": job.task}, data_rows=rows)
