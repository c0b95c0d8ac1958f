"""Engines: where a generating command's records are executed. The default is in this process (the runner's
sliding window, `caitool.runner`); `ray_engine` runs the same record tasks in Ray actors (`--engine ray`).
An engine never writes output itself: the driver's `OutputStore` does, for every engine."""

ENGINES = ("local", "ray")
