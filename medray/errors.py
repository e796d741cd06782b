"""Errors a user sees: each names the file, line or key at fault."""

from __future__ import annotations


class MedrayError(Exception):
    """Base class: the CLI prints these without a traceback."""


class SourceError(MedrayError):
    """A source file is missing or malformed; `line` is 1-based, 0 when not known."""

    def __init__(self, path: str, line: int, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # raised in Ray workers: must unpickle on the driver with the same fields
        return type(self), (self.path, self.line, self.message)


class ConfigError(MedrayError):
    """A config key is unknown, missing or has the wrong type; names the dotted key."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}config key '{key}': {message}")

    def __reduce__(self):
        return type(self), (self.key, self.message, self.source)
