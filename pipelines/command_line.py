"""One convention for every command-line tool: a user error is one line on stderr and exit status 2.

Bad input (a wrong argument, a missing file, a model folder that is not one, the Hub offline) raises one of
`USER_ERRORS` somewhere below `main`; the command prints `error: <message>` and exits 2, as argparse does for
its own errors. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, ConnectionError, KeyError)


def run_command(main: Callable, parse_args: Callable | None, argv=None):
    """`main(parse_args(argv))` (or `main(argv)` when parse_args is None), user errors as one line, exit 2."""
    try:
        return main(parse_args(argv)) if parse_args is not None else main(argv)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
