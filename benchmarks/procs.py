"""Start worker processes (worker.py) and read their JSON lines as they come.

``Worker`` wraps one ``python worker.py <spec>`` subprocess: a reader thread
collects its stdout lines into ``events`` (parsed JSON) and the final
``result``; stderr goes to a temporary file whose tail is shown when the worker
fails. ``run(spec)`` is the common case: start, wait, return the result dict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"


class Worker:
    def __init__(self, spec: dict, name: str = ""):
        self.spec = spec
        self.name = name or f"{spec.get('driver')}.{spec.get('op')}"
        self.events: list[dict] = []
        self.result: dict | None = None
        self._cond = threading.Condition()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - read after the worker exits
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=str(HERE),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                if "result" in obj:
                    self.result = obj["result"]
                else:
                    self.events.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_event(self, ev: str, timeout: float) -> dict | None:
        """The first event named ``ev`` (waiting up to ``timeout`` s), or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event.get("ev") == ev:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.2))

    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.events)

    def wait(self, timeout: float) -> dict:
        """The worker's result; kills it after ``timeout`` s (the result then says so)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._reader.join(2)
            return {"error": f"timed out after {timeout:.0f} s" + self._stderr_tail()}
        self._reader.join(5)
        if self.result is None:
            return {
                "error": f"exited with status {self.proc.returncode} without a result"
                + self._stderr_tail()
            }
        if "error" in self.result:
            self.result["error"] += self._stderr_tail(400)
        return self.result

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _stderr_tail(self, limit: int = 600) -> str:
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        tail = " | ".join(lines[-4:])
        return f" (stderr: {tail[-limit:]})" if tail else ""


def run(spec: dict, timeout: float = 120.0) -> dict:
    return Worker(spec).wait(timeout)


def run_pair(consumer_spec: dict, producer_spec: dict, timeout: float) -> tuple[dict, dict]:
    """Start a consumer, wait until it says ready, then run a producer alongside."""
    consumer = Worker(consumer_spec)
    if consumer.wait_event("ready", 20) is None:
        res = consumer.wait(1)
        return {"error": "the consumer never became ready: " + res.get("error", "")}, {}
    producer = Worker(producer_spec)
    produced = producer.wait(timeout)
    consumed = consumer.wait(timeout)
    return consumed, produced
