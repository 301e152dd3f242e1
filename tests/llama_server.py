"""llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`), with the
packaged SmolLM2 or another GGUF, on 127.0.0.1: a real remote LLM that a test may kill
and restart."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avatar_rtc.backends.smollm2 import packaged_model_path


class LlamaServer:
    def __init__(self, port: int, model: Path | None = None) -> None:
        self.port = port
        self.model = model or packaged_model_path()
        self.url = f"http://127.0.0.1:{port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
             "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "2",
             "--n_ctx", "2048"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.kill()
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(20)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)
            self.process = None


@contextmanager
def llama_server(port: int, model: Path | None = None) -> Iterator[str]:
    """A started server's base URL, stopped at the end."""
    server = LlamaServer(port, model)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
