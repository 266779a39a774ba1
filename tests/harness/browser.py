"""A real headless Chromium (Debian's `chromium` package), driven over the Chrome DevTools Protocol.

`Browser.evaluate(url, script)` loads a page and returns what a JavaScript expression computes in it once the
page has loaded, so a test checks what a person would see (rendered sizes, decoded images, visible text), not
the HTML source. Missing Chromium skips the test, or fails it when CI=true."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str:
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    reason = "Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI=true: the browser is required)")
    pytest.skip(reason)


class Browser:
    """One headless Chromium process with its own profile."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="selfguide-chromium-"))
        self.process = subprocess.Popen(
            [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.port = self._port()
        self._ids = itertools.count(1)

    def _port(self, timeout: float = 60) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"Chromium exited with code {self.process.returncode}")
            if marker.is_file() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            time.sleep(0.1)
        raise AssertionError("Chromium did not open its DevTools port")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def evaluate(self, url: str, expression: str, timeout: float = 60) -> Any:
        """Open `url` in a new tab, wait for its load event, return the value of `expression`."""
        return asyncio.run(asyncio.wait_for(self._evaluate(url, expression), timeout))

    async def _evaluate(self, url: str, expression: str) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as response:
                target = await response.json()
            try:
                async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    await self._call(ws, "Page.enable")
                    await self._call(ws, "Page.navigate", url=url, wait_event="Page.loadEventFired")
                    result = await self._call(ws, "Runtime.evaluate", expression=expression, returnByValue=True,
                                              awaitPromise=True)
            finally:
                async with session.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}"):
                    pass
        if "exceptionDetails" in result:
            raise AssertionError(f"the page's script failed: {json.dumps(result['exceptionDetails'])[:2000]}")
        return result["result"].get("value")

    async def _call(self, ws: aiohttp.ClientWebSocketResponse, method: str, wait_event: str | None = None,
                    **params: Any) -> dict[str, Any]:
        """Send one command; return its result once it (and `wait_event`, when given) arrived."""
        ident = next(self._ids)
        await ws.send_json({"id": ident, "method": method, "params": params})
        result: dict[str, Any] | None = None
        seen_event = wait_event is None
        while result is None or not seen_event:
            message = json.loads((await ws.receive()).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result = message["result"]
            elif message.get("method") == wait_event:
                seen_event = True
        return result
