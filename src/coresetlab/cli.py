"""The command line around ``@hydra.main``: Hydra's own composition errors as one ``error:`` line.

Hydra prints an unknown group option (``coreset_method=nope``), an unknown profile or experiment, an
override of a key that does not exist (``foo=1``) or an unparsable override as a multi-line message and
exits 1. :func:`run_app` asks Hydra to raise instead (``HYDRA_FULL_ERROR=1``) and prints one ``error:``
line -- plus, for an unknown option, one line listing the valid ones -- and exits 2, like every other bad
input (:mod:`coresetlab.errors`). Set ``HYDRA_FULL_ERROR=1`` yourself for Hydra's full report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from coresetlab.errors import CoresetlabError, RunInterrupted

BAD_INPUT = 2


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def error_lines(e: BaseException) -> list[str]:
    """What to print for a Hydra/OmegaConf composition error: ``["error: ...", optional second line]``."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options is not None:
        group, _, name = str(e.missing_cfg_file).rpartition("/")
        if group:
            return [f"error: unknown {group} '{name}'",
                    f"  valid {group} options: {', '.join(e.options)}"]
    msg = _first_line(str(e)).rstrip(".")
    if isinstance(e, OverrideParseException):
        msg = f"cannot parse the override '{e.override}': {_first_line(e.message)}"
    cause = e.__cause__ or e.__context__
    if cause is not None and _first_line(str(cause)) and _first_line(str(cause)) not in msg:
        msg = f"{msg}: {_first_line(str(cause))}"
    hint = [line.strip() for line in str(e).splitlines() if line.strip().startswith("To append")]
    return [f"error: {msg}"] + [f"  {h}" for h in hint[:1]]


def run_app(main: Callable[[], Any]) -> None:
    """Call the ``@hydra.main`` function ``main``; composition errors -> one line, exit 2; a signal
    outside the run itself -> the resume line, exit 128 + signal."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    from coresetlab.interrupts import resume_hint

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises; we print
    try:
        main()
    except RunInterrupted as e:
        print(f"error: {resume_hint(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (CompactHydraException, OmegaConfBaseException, CoresetlabError) as e:
        if full:
            raise
        for line in error_lines(e):
            print(line, file=sys.stderr)
        sys.exit(BAD_INPUT)
