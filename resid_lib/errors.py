"""Errors the workbench reports to users as one clear line."""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the command line prints the message and exits non-zero."""


class DataError(WorkbenchError, ValueError):
    """A dataset file is malformed, inconsistent or missing something required."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration key, value or combination of settings is invalid."""


class RunDirError(WorkbenchError):
    """A run directory is missing, incomplete or belongs to another dataset."""
