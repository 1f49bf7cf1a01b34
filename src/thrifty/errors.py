"""User-facing errors.

Anything a user can fix (a wrong path, a bad config key, data that cannot be trained on) is raised as a
``ThriftyError``: the CLI prints its message as one line on stderr and exits with code 2, without a
traceback. Everything else is a bug and keeps its traceback.
"""


class ThriftyError(Exception):
    """A problem with the user's input, with a message that names the problem and the fix."""

    exit_code = 2


class ConfigError(ThriftyError):
    """The configuration (YAML or command-line override) is invalid."""


class DataError(ThriftyError):
    """The data cannot be read or cannot be trained on."""


class ModelError(ThriftyError):
    """The model cannot be loaded or does not fit the chosen strategy."""


class RunDirError(ThriftyError):
    """The run folder cannot be created, written, resumed or read."""


class Interrupted(ThriftyError):
    """Training was stopped by the user (Ctrl-C / SIGTERM) at a safe, resumable point."""

    exit_code = 130
