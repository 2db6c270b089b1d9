"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class ReverieError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(ReverieError, ValueError):
    """Unknown config key, wrong type, malformed schedule, unknown preset."""


class TaskError(ReverieError, ValueError):
    """Unknown task name, missing environment suite, unsupported observation/action space."""


class CheckpointError(ReverieError):
    """No complete checkpoint, corrupt checkpoint, or a resume that would change the model."""
