"""The one exception type for what a user can fix.

:class:`ConfigError` is raised for bad input: a config key, an argument, a file a user pointed at. Its message names
the key (or argument, or file), the bad value and the valid values, so it reads well on one line. It is a
``ValueError``, so library callers that catch ``ValueError`` keep working. The command-line tools print a
``ConfigError`` as one line and exit with status 2; any other exception is a bug and keeps its traceback (status 1).
:class:`Interrupted` is a stop the user asked for (Ctrl-C, or SIGTERM from a scheduler): the tools print one line
saying what was kept and how to resume, and exit with 128 + the signal's number (130 for SIGINT).
This module imports only the standard library, so every layer, blocks included, may raise them.
"""
import signal

__all__ = ["ConfigError", "Interrupted"]


class ConfigError(ValueError):
    """Bad input the user can fix; the message names the key, the bad value and the valid values."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``str()`` says what was done about it. A ``KeyboardInterrupt``, so code that lets
    Ctrl-C through (DataLoader's workers, the CLIs) lets this through too."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        self.signum = int(signum)
        super().__init__(message or f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
