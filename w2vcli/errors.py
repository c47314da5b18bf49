"""The one error type a user can cause. The CLI prints its message in one red line and exits non-zero."""


class W2VError(Exception):
    """A problem the user can fix: bad input file, bad flag, missing model. The message says what to do."""

    exit_code = 1


class UsageError(W2VError):
    """Bad command-line usage (exit code 2, like Typer's own usage errors)."""

    exit_code = 2
