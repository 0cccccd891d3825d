"""The one exception type for what a user can fix.

:class:`ConfigError` is raised for bad input: a config key, an argument, a file a user pointed at. Its message names
the key (or argument, or file), the bad value and the valid values, so it reads well on one line. It is a
``ValueError``, so library callers that catch ``ValueError`` keep working. The command-line tools print a
``ConfigError`` as one line and exit with status 2; any other exception is a bug and keeps its traceback (status 1).
This module imports nothing, so every layer, blocks included, may raise it.
"""

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Bad input the user can fix; the message names the key, the bad value and the valid values."""
