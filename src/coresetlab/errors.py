"""The project's errors and what a user gets for each (the README's "Error policy").

* :class:`CoresetlabError` (bad input: :class:`ConfigError`, :class:`DataError`) -- one ``error:`` line,
  exit status 2, no ``results.json``; raised before any data is loaded when the config alone shows it.
* :class:`RunFailure` (the run itself went wrong: :class:`TrainingDiverged`, :class:`NonFiniteResult`) --
  one ``error:`` line, ``results.json`` with ``status: failed`` and the reason, exit status 1.
* :class:`RunInterrupted` (SIGTERM / SIGINT) -- one line saying how to resume, ``results.json`` with
  ``status: interrupted``, checkpoints kept, exit status 143 / 130.
"""

from __future__ import annotations


class CoresetlabError(Exception):
    """Base class of errors caused by the user's input (config, data, paths)."""


class ConfigError(CoresetlabError):
    """An invalid configuration value (wrong type, unknown choice, inconsistent settings)."""


class DataError(CoresetlabError):
    """A dataset is missing or corrupt. The message names the expected files and the root searched."""


class RunFailure(RuntimeError):
    """A run that could not produce a valid result although its input was valid; the message says why."""


class TrainingDiverged(RunFailure):
    """A training phase produced a non-finite loss or validation metric (NaN/inf)."""

    def __init__(self, phase: str, epoch: int, what: str) -> None:
        self.phase, self.epoch, self.what = phase, int(epoch), what
        super().__init__(
            f"training diverged in phase '{phase}' at epoch {self.epoch}: {what} "
            "(lower the learning rate or check the data)"
        )


class NonFiniteResult(RunFailure):
    """A task returned NaN/inf (or a missing value) among its metrics or table rows."""


class RunInterrupted(BaseException):
    """SIGTERM (e.g. a SLURM time limit) or SIGINT (Ctrl-C) arrived during a run.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` in a task swallows it.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.signame = signal.Signals(self.signum).name
        self.exit_code = 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT
        super().__init__(f"interrupted by {self.signame}")


def unwrap(e: BaseException) -> BaseException:
    """The error under Hydra's ``InstantiationException`` wrappers (``e`` itself if not wrapped)."""
    from hydra.errors import InstantiationException

    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def user_error(e: BaseException) -> CoresetlabError | None:
    """``e`` itself, or the :class:`CoresetlabError` a Hydra ``InstantiationException`` wraps; else None."""
    inner = unwrap(e)
    return inner if isinstance(inner, CoresetlabError) else None
