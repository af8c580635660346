"""Following a running agent: its output file read as it grows, each line redacted and handed on
(the step's stdout, hence the UI's captured log and the pod log), its tool calls turned into short
lines for the run's event log, and a heartbeat when it has been silent for a while.

The agent writes straight to its log file, as before: following reads the file behind it, in
bounded chunks, so a 100 MB output neither slows the agent nor grows memory; past
`live_limit_bytes` the live copy stops with a note (the file keeps everything).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.metrics.progress import format_duration

CHUNK_BYTES = 256 * 1024
LINE_LIMIT = 1024 * 1024  # a longer line is handed on cut (tool inputs can hold whole files)
SHOWN_LINE_CHARS = 2000  # what the live log shows of one line
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class AgentWatch:
    """Where a running agent's output and actions go. Every text is redacted before it is
    handed on."""

    output: Callable[[list[str]], None]  # lines of output, in order, a batch at a time
    activity: Callable[[str], None]  # "editing src/app.ts", "running npm test"
    silence: Callable[[str], None]  # "agent silent for 5 min (running 12 min)"
    redact: Callable[[str], str] = lambda text: text
    heartbeat_seconds: float = 300.0
    live_limit_bytes: int = 20 * 1024 * 1024


class OutputFollower:
    """Reads `path` as the agent writes it, on a thread of its own, until `stop()`."""

    def __init__(self, path: Path, watch: AgentWatch, events: Callable[[str], list[str]]):
        self._path = path
        self._watch = watch
        self._events = events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-output", daemon=True)
        self._position = 0
        self._partial = b""
        self._shown = 0
        self._cut_noted = False
        self._started = time.monotonic()
        self._last_output = self._started
        self._last_heartbeat = self._started

    def start(self) -> OutputFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Read what is left, then end (called once the agent has exited)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            with self._path.open("rb") as handle:
                while True:
                    stopping = self._stop.is_set()
                    got = self._read(handle)
                    if stopping and not got:
                        break
                    if not got:
                        self._heartbeat()
                        self._stop.wait(POLL_SECONDS)
                if self._partial:
                    self._hand_on([self._partial])
        except Exception as exc:  # following must never fail the task
            try:
                self._watch.activity(f"(live output stopped: {type(exc).__name__})")
            except Exception:  # noqa: S110 - nothing more to tell anyone
                pass

    def _read(self, handle) -> bool:
        handle.seek(self._position)
        data = handle.read(CHUNK_BYTES)
        if not data:
            return False
        self._position += len(data)
        self._last_output = time.monotonic()
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if len(self._partial) > LINE_LIMIT:
            pieces.append(self._partial)
            self._partial = b""
        self._hand_on(pieces)
        return True

    def _hand_on(self, raw_lines: list[bytes]) -> None:
        watch = self._watch
        shown: list[str] = []
        for raw in raw_lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if len(raw) <= LINE_LIMIT:
                for event in self._events(text):
                    watch.activity(watch.redact(event))
            if self._shown < watch.live_limit_bytes:
                line = text if len(text) <= SHOWN_LINE_CHARS else text[:SHOWN_LINE_CHARS] + " …"
                shown.append(watch.redact(line))
                self._shown += len(raw) + 1
            elif not self._cut_noted:
                self._cut_noted = True
                shown.append(
                    f"… live output stops after {watch.live_limit_bytes // (1024 * 1024)} MB; "
                    "the step's agent log file keeps all of it"
                )
        if shown:
            watch.output(shown)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        silent = now - self._last_output
        beat = self._watch.heartbeat_seconds
        if beat > 0 and silent >= beat and now - self._last_heartbeat >= beat:
            self._last_heartbeat = now
            self._watch.silence(
                f"agent silent for {format_duration(silent)} "
                f"(running {format_duration(now - self._started)})"
            )
