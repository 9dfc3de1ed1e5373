"""User-facing errors: raised for bad input, reported as one clear line, no traceback wall."""

from __future__ import annotations


class CoresetlabError(Exception):
    """Base class of errors caused by the user's input (config, data, paths)."""


class ConfigError(CoresetlabError):
    """An invalid configuration value (wrong type, unknown choice, inconsistent settings)."""


class DataError(CoresetlabError):
    """A dataset is missing or corrupt. The message names the expected files and the root searched."""
