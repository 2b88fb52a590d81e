"""The error tree: every failure animagent raises on purpose, and the exit code the CLI gives it.

    AnimagentError                 exit 1  a bug or an unexpected failure (traceback goes to the log)
    ├── InputError                 exit 2  bad story, config, --set, script or CLI argument
    ├── DirectorOutputError        exit 3  the director's replies stayed invalid after max_attempts
    ├── MissingError               exit 4  weights, an optional package or a backend is not there
    │   └── DirectorUnavailableError       the director server could not be reached before the deadline
    ├── ResourceError              exit 5  out of GPU memory or disk after recovery (resumable)
    └── RunLockedError             exit 6  another live process holds the run folder

Ctrl-C is not an AnimagentError: the CLI maps KeyboardInterrupt to exit 130 (resumable).
This module owns the classes and their exit codes; it does not print or log anything.
"""

from __future__ import annotations


class AnimagentError(Exception):
    exit_code = 1


class InputError(AnimagentError):
    exit_code = 2


class DirectorOutputError(AnimagentError):
    exit_code = 3

    def __init__(self, task: str, attempts: int, last_error: str, log_path: str):
        self.task = task
        self.attempts = attempts
        self.last_error = last_error
        self.log_path = log_path
        super().__init__(
            f"director task '{task}' gave no valid reply in {attempts} attempt(s) "
            f"(last problem: {last_error}); raw replies are in {log_path}"
        )


class MissingError(AnimagentError):
    exit_code = 4


class DirectorUnavailableError(MissingError):
    pass


class ResourceError(AnimagentError):
    exit_code = 5


class RunLockedError(AnimagentError):
    exit_code = 6
