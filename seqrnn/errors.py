"""Errors a user can cause, and the checks that raise them.

Every entry point catches :class:`SeqRNNError` and prints its message as one line, then exits
non-zero; so a message must name the bad value and what is allowed, without a traceback's help.
"""

from __future__ import annotations

from collections.abc import Iterable


class SeqRNNError(Exception):
    """A problem with what the user asked for: a config value, a data file, a checkpoint."""


class ConfigError(SeqRNNError, ValueError):
    """A configuration value outside what is allowed."""


class DataError(SeqRNNError):
    """Missing, corrupt or truncated data files."""


class CheckpointError(SeqRNNError):
    """A checkpoint that does not exist or does not fit the job."""


class OutputError(SeqRNNError):
    """A file that could not be written: a full disk, a path that is not writable."""


class RunDirBusy(SeqRNNError):
    """Another live process is training into the same run dir."""


def require_choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; raise :class:`ConfigError` naming both."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def require_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum``; raise :class:`ConfigError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
    return value


def require_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is true or false; raise :class:`ConfigError` otherwise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not allowed; it must be true or false")
    return value


def require_seconds(name: str, value: object) -> float | None:
    """Return ``value`` if it is null or a number of seconds > 0; raise otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name}={value!r} is not allowed; it must be seconds > 0, or null")
    return value
