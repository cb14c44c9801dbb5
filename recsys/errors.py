"""User-facing errors: printed as one line with a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class RecsysError(Exception):
    """An error the user can fix; its message says what happened and what to do."""

    exit_code = 1


def run_reporting_errors(prog: str, body: Callable[[], int]) -> int:
    """Run `body`; a RecsysError or Ctrl-C becomes one line on stderr and an exit code."""
    try:
        return body()
    except RecsysError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
