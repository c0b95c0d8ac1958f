"""`FakeServer`: the fake API on a free loopback port, served from a background thread (the handle tests
hold)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from .config import FakeConfig
from .server import State, shutdown, start_runner

_T = TypeVar("_T")


class FakeServer:
    """The fake API on 127.0.0.1:<free port>, served by its own event loop in a daemon thread."""

    def __init__(self, **config: Any) -> None:
        self._state = State(FakeConfig.build(config))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # lifecycle -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Start serving; returns the base url "http://127.0.0.1:PORT"."""
        if self._thread is not None:
            raise RuntimeError("FakeServer is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, bound = loop.run_until_complete(start_runner(self._state, "127.0.0.1", port))
                self._url = f"http://127.0.0.1:{bound}"
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(shutdown(self._state, self._runner))
                loop.close()

        thread = threading.Thread(target=run, name="caitool-fake-server", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        assert self._url is not None
        return self._url

    def stop(self) -> None:
        """Stop serving; in-flight requests (hangs included) are cancelled. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._url = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # control -------------------------------------------------------------------------------------------

    def _in_loop(self, fn: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None or self._thread is threading.current_thread():
            return fn()

        async def call() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def configure(self, **config: Any) -> None:
        """Update some config fields (the others keep their values). Raises ValueError on a bad field."""
        cfg = FakeConfig.build(config, self._state.active.cfg)
        self._in_loop(lambda: self._state.set_config(cfg))

    def reset(self, **config: Any) -> None:
        """Zero the counters, drop in-flight requests, set the config to the constructor's plus `config`."""
        cfg = FakeConfig.build(config, self._state.base)

        def do() -> None:
            self._state.clear()
            self._state.set_config(cfg)

        self._in_loop(do)

    def stats(self, brief: bool = False) -> dict[str, Any]:
        """A snapshot of the counters (see `GET /_stats`)."""
        return self._in_loop(lambda: self._state.snapshot(brief=brief))

    def attempts_for(self, substring: str) -> int:
        """Attempts summed over the prompts whose recorded text (last user message / prompt tail) has it."""

        def count() -> int:
            st = self._state
            return sum(n for k, n in st.attempts.items() if substring in st.prompts.get(k, ""))

        return self._in_loop(count)

    @property
    def config(self) -> FakeConfig:
        return self._state.active.cfg

    # addresses -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeServer is not running (call start() or use it as a context manager)")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url
