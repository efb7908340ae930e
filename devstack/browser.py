"""Headless Chromium driven over the DevTools protocol, for tests of the gallery page: open a page,
run JavaScript in it, wait until something holds, emulate a phone's screen, pick a file in a
file input, take a screenshot.

    with Browser(tmp_path / "profile") as browser:
        browser.open(f"{query.http}/?q=red+tops")
        browser.wait_for("document.body.dataset.state === 'results'")
        browser.screenshot(tmp_path / "gallery.png")
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import websocket

CHROMIUM = "chromium"
# Headless on a machine whose only network is the registries: without the background-networking
# flags Chromium keeps trying to reach Google's hosts.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def dump_dom(url: str, profile: Path, budget_ms: int = 15000, timeout: float = 120) -> str:
    """The page at `url` as Chromium leaves it after `budget_ms` of virtual time (its scripts
    run, its images load): the serialised DOM."""
    return subprocess.run(
        [
            CHROMIUM,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout


class BrowserError(RuntimeError):
    """The browser failed, or a script in the page threw, or a condition never held."""


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol.

    Args:
        profile_dir: its user-data directory (created; it also says on which port it listens).
        chromium: the browser's executable.
        timeout: seconds to wait for the browser to start and for each protocol call.
    """

    def __init__(self, profile_dir: Path, chromium: str = CHROMIUM, timeout: float = 60.0) -> None:
        self.profile_dir = profile_dir
        self.chromium = chromium
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: websocket.WebSocket | None = None
        self._ids = itertools.count(1)

    def start(self) -> Browser:
        """Start the browser and attach to its page."""
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [
                self.chromium,
                *HEADLESS_FLAGS,
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile_dir}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"{self.chromium} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout).json()
        page = next(t for t in targets if t["type"] == "page")
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def close(self) -> None:
        """Close the connection and stop the browser."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools protocol command; its result (events meanwhile are dropped)."""
        if self._socket is None:
            raise BrowserError("the browser is not started")
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]!r} threw: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout}s: {expression}")
            time.sleep(0.1)

    def open(self, url: str) -> None:
        """Navigate the page to `url` and wait until the new document has loaded (its address
        may have changed since: pages rewrite it)."""
        self.evaluate("window.devstackLeaving = true")
        self.call("Page.navigate", url=url)
        self.wait_for("!window.devstackLeaving && document.readyState === 'complete'")

    def on_new_document(self, source: str) -> None:
        """Run `source` in every page opened from now on, before the page's own scripts."""
        self.call("Page.addScriptToEvaluateOnNewDocument", source=source)

    def viewport(self, width: int, height: int, mobile: bool = False, scale: float = 1) -> None:
        """Emulate a screen `width` by `height` CSS pixels (a phone's when `mobile`)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Pick files in a file input, as a person would (its change event fires)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])

    def screenshot(self, path: Path) -> Path:
        """Save what the page shows (the viewport) as a PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
