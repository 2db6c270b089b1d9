"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class ReverieError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(ReverieError, ValueError):
    """Unknown config key, wrong type, malformed schedule, unknown preset."""


class TaskError(ReverieError, ValueError):
    """Unknown task name, missing environment suite, unsupported observation/action space."""


class CheckpointError(ReverieError):
    """No complete checkpoint, corrupt checkpoint, or a resume that would change the model."""


class RunError(ReverieError):
    """A run that cannot start in its directory (a file, not writable, trained by another
    process now) or that a file-system fault stopped (disk full, I/O error); the message says
    what failed and, for a stopped run, the last complete checkpoint and the command that resumes."""


class EnvWorkerError(RunError):
    """An environment's worker process failed (``reverie.envs.parallel``): its env raised, could
    not be built, or the worker died. The message names the env index, the task and what
    happened: the env's error type and message, or the worker's pid and its exit code or signal."""


def describe_os_error(error: OSError) -> str:
    """``OSError`` as one line: the reason and the file, e.g. "No space left on device: runs/x/metrics.jsonl"."""
    reason = error.strerror or str(error) or type(error).__name__
    names = [name for name in (error.filename, error.filename2) if name]
    return f"{reason}: {' -> '.join(map(str, names))}" if names else reason
