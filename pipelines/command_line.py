"""One convention for every command-line tool: a user error is one line on stderr and exit status 2.

Bad input (a wrong argument, a missing file, a model folder that is not one, the Hub offline) raises one of
`USER_ERRORS` somewhere below `main`; the command prints `error: <message>` and exits 2, as argparse does for
its own errors. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import constants

from adapters.folders import TerminatedError, release_all_output_locks

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    FileExistsError,
    PermissionError,
    ConnectionError,
    KeyError,
)


def run_command(main: Callable, parse_args: Callable | None, argv=None):
    """`main(parse_args(argv))` (or `main(argv)` when parse_args is None), user errors as one line, exit 2."""
    try:
        return main(parse_args(argv)) if parse_args is not None else main(argv)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, TerminatedError) as error:
        # Cleanup blocks have run on the way up (staging folders removed); say so in one line.
        print(f"error: {error or 'interrupted'}; nothing half-written was left", file=sys.stderr)
        sys.exit(getattr(error, "exit_status", 130))
    finally:
        release_all_output_locks()  # a refused or failed command frees its output folder at once


def check_pretrained(value: str | os.PathLike, option: str = "--pretrained", hub: bool = True) -> str:
    """Fail up front when `value` names no local folder and cannot be a Hub repo id either.

    A path such as `out/model` is both a folder name and a valid-looking Hub id; if the folder is missing,
    loading it would try the Hub and report a connection error. So a missing folder is named as such
    whenever the Hub is not an option: the value is not of the `owner/name` form, `hub` is False (the command
    reads local folders only), or HF_HUB_OFFLINE is set (read through huggingface_hub, as the library does).
    """
    text = str(value)
    if Path(text).expanduser().is_dir():
        return text
    if Path(text).expanduser().exists():
        raise NotADirectoryError(f"{option} {text} is a file; give the model's folder")
    parts = text.split("/")
    hub_id = len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text
    if not hub or not hub_id:
        raise FileNotFoundError(f"{option} folder {text} does not exist; check the path")
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{option} folder {text} does not exist, and HF_HUB_OFFLINE is set, so it is not looked up on the "
            "Hub; check the path (or unset HF_HUB_OFFLINE for a Hub id)"
        )
    return text
