"""The one exception type users see: the CLI prints it as ``error: WHERE: what`` and exits 1."""

from __future__ import annotations


class SpacesError(Exception):
    """A user error (bad input, bad config, bad model dir), located where the user can fix it.

    ``where`` is ``FILE:LINE`` for a record, ``FILE`` for a whole file, or a config key path.
    """

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message, where)  # both in args, so the error survives pickling from a worker
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class WriteError(SpacesError):
    """The machine refused a write (disk full, read-only, no permission): a rerun may resume once it is fixed."""


class Interrupted(SpacesError):
    """Ctrl-C during a resumable command: the CLI prints how much is saved and exits 130."""

    exit_code = 130
