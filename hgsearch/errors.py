"""The one exception type that reaches a user as a message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: a bad key, value, file or folder.

    The CLI prints each line of the message as ``hgsearch: error: <line>`` and exits with code 2.
    Every line names the key, value or file at fault and what is allowed.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))
