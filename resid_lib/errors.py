"""Errors the workbench reports to users as one clear line, and the setting checks that raise them."""
from __future__ import annotations

from typing import Any, Iterable


class WorkbenchError(Exception):
    """Base class: the command line prints the message and exits non-zero."""


class DataError(WorkbenchError, ValueError):
    """A dataset file is malformed, inconsistent or missing something required."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration key, value or combination of settings is invalid."""


class RunDirError(WorkbenchError):
    """A run directory is missing, incomplete or belongs to another dataset."""


def check_model_settings(section: str, settings: Any, positive: Iterable[str]) -> None:
    """ConfigError naming ``section.key`` for the size settings every transformer shares.

    Each key in ``positive`` must be at least 1, ``d_model`` divisible by ``n_heads``,
    and ``dropout`` in [0, 1).
    """
    for key in positive:
        if getattr(settings, key) < 1:
            raise ConfigError(f"{section}.{key} must be at least 1, got {getattr(settings, key)}")
    if settings.d_model % settings.n_heads:
        raise ConfigError(f"{section}.d_model ({settings.d_model}) must be divisible by {section}.n_heads "
                          f"({settings.n_heads})")
    if not 0.0 <= settings.dropout < 1.0:
        raise ConfigError(f"{section}.dropout must be in [0, 1), got {settings.dropout}")
