"""The tuner's side of the worker: spawn, send a trial, enforce its timeout, respawn after a crash."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class TrialWorker:
    """One worker subprocess, respawned whenever it dies, hangs or reports a broken CUDA context."""

    def __init__(self, timeout_s: float = 120.0, env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.timeout_s = timeout_s
        self.env = {**os.environ, **(env or {})}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="kernelgen-worker-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._next_id = 0
        self._log_path: Path | None = None

    def _spawn(self) -> None:
        self._log_path = self.log_dir / f"worker-{self.restarts}.log"
        root = str(Path(__file__).resolve().parents[2])
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kernelgen.tune.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self._log_path, "w"), env=env, text=True, bufsize=1)

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.restarts += 1

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self._log_path.read_text().strip().splitlines()[-lines:]) if self._log_path else ""
        except OSError:
            return ""

    def run(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one trial; the reply, or a failure reply when the worker hangs or dies (marked
        ``transient``: a later run tries the config again)."""
        if self.process is None or self.process.poll() is not None:
            self._spawn()
        self._next_id += 1
        request = {**request, "id": self._next_id}
        assert self.process and self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died(request)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                return {"id": request["id"], "ok": False, "ms": None, "errors": {}, "transient": True,
                        "reason": f"timeout: no result after {timeout_s or self.timeout_s:g} s (worker restarted)"}
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, 1.0))
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    return self._died(request)
                reply = json.loads(line)
                if reply.get("fatal"):
                    self._kill()
                    reply["reason"] = f"{reply['reason']} (CUDA context lost; worker restarted)"
                return reply

    def _died(self, request: dict[str, Any]) -> dict[str, Any]:
        code = self.process.poll() if self.process else None
        tail = self.log_tail(3)
        self._kill()
        # transient: the worker may have been killed from outside (out of host memory, another job)
        return {"id": request["id"], "ok": False, "ms": None, "errors": {}, "transient": True,
                "reason": f"worker died (exit code {code}){': ' + tail.splitlines()[-1] if tail else ''}"}

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.process.stdin.close()  # type: ignore[union-attr]
                self.process.wait(timeout=5)
            except Exception:  # noqa: BLE001
                self.process.kill()
        self.process = None

    def __enter__(self) -> "TrialWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
