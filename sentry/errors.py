"""Errors that cross layers of the Sentry."""
from __future__ import annotations

import errno as _errno


class SyscallError(Exception):
    """A system call fails with ``errno``. The dispatcher alone turns it
    into ``-errno`` for the guest; any other exception is a Sentry bug."""

    __slots__ = ("errno",)

    def __init__(self, err: int):
        super().__init__(err)
        self.errno = err

    def __str__(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


class GuestExit(BaseException):
    """Unwinds a task's run loop when its thread group exits.
    status is a wait(2) status word."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class ExecError(Exception):
    """The program cannot be executed: ``errno`` says why (ENOENT,
    ENOEXEC, EACCES...), ``message`` is the one line shown to the user."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err
        self.message = message
