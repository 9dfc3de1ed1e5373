"""SIGTERM / SIGINT during a run: stop cleanly, keep the checkpoints, say how to resume.

SLURM sends SIGTERM at the time limit; Ctrl-C sends SIGINT. While :func:`interruptible` is active both
raise :class:`~coresetlab.errors.RunInterrupted` in the main thread, whatever the run is doing. The runner
turns it into one line on stderr and an ``interrupted`` record; ``run.py`` exits with ``128 + signal``
(143 / 130). The per-epoch checkpoints (``ckpt/<phase>/last.ckpt``, and ``ckpt/last.ckpt`` of a parent
being trained in the cache) stay, so relaunching the same command resumes.

Lightning (2.6) installs its own SIGTERM handler during ``Trainer.fit``: it only sets
``trainer.received_sigterm`` and, at the next batch boundary, raises ``SIGTERMException`` -- a
``SystemExit`` with no code, i.e. exit status 0. It keeps a handler that was installed before it and calls
it after its own, so ours still runs and raises first. For SIGINT Lightning catches ``KeyboardInterrupt``
and calls ``sys.exit(1)``; ours raises :class:`RunInterrupted` instead, which Lightning re-raises after
its teardown.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from coresetlab.errors import RunInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise :class:`RunInterrupted` once (repeats are ignored while the
    run cleans up); the previous handlers come back afterwards. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = {"signal": None}

    def handler(signum: int, frame: Any) -> None:
        if fired["signal"] is None:
            fired["signal"] = signum
            raise RunInterrupted(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def interruptible_call(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`interruptible`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with interruptible():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def resume_hint(e: RunInterrupted, where: str | None = None) -> str:
    """The one line printed for an interrupted run."""
    kept = f"; checkpoints kept in {where}" if where else ""
    return (f"interrupted by {e.signame}: relaunch the same command to resume from the last epoch "
            f"checkpoint (ckpt/<phase>/last.ckpt) and the finished steps kept in ckpt/ (e.g. Dubey variants "
            f"and sweep points){kept}")
