"""The one exception a user error raises: :class:`UserError` names the argument, the bad value and the fix.

Every entry point raises it (or a subclass) for input the user can correct; the command lines print it as one
line and exit 2 (:func:`ddsutils.core.cli.command`).
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["UserError", "show"]

_UNSET: Any = object()


class UserError(ValueError):
    """A mistake the user can fix; ``str()`` is ``"<argument>: <value>: <message>"`` (parts known so far).

    Args:
        message: what is wrong and how to fix it (one sentence or two, no traceback material).
        argument: the argument or parameter it is about (``"--n"``, ``"num_steps"``), if known.
        value: the bad value as given, if known.
    """

    def __init__(self, message: str, *, argument: str | None = None, value: Any = _UNSET) -> None:
        super().__init__(message)
        self.message = str(message)
        self.argument = argument
        self.value = value

    def about(self, argument: str, value: Any = _UNSET) -> UserError:
        """Name the argument (and the value) when the raiser did not; returns ``self`` for ``raise e.about(...)``."""
        if self.argument is None:
            self.argument = argument
            if self.value is _UNSET:
                self.value = value
        return self

    def __str__(self) -> str:
        head = [self.argument] if self.argument else []
        message = self.message
        if self.value is not _UNSET:
            head.append(show(self.value))
            if message.startswith(f"{head[-1]} "):  # "x.pt: x.pt is not ..." -> "x.pt: is not ..."
                message = message[len(head[-1]) + 1:]
        return ": ".join([*head, message])


def show(value: Any) -> str:
    """A value as the user typed it: strings bare unless empty or padded, everything else ``repr``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return value if value and value.strip() == value else repr(value)
    return repr(value)
