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

import hub_cards
from adapters.folders import TerminatedError, release_all_output_locks

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    FileExistsError,
    IsADirectoryError,
    PermissionError,
    ConnectionError,
    KeyError,
)


# Seeds reach torch generators (up to 2**64 - 1), numpy and Python's `random` (numpy takes up to 2**32 - 1), and
# the commands derive per-image seeds from them (seed + index, (seed * 10 + digit) * 100_000 + index): this bound
# holds for every use.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, option: str = "--seed") -> None:
    """Refuse a seed outside [0, MAX_SEED] before any work, naming the option."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{option} must be in [0, {MAX_SEED}] (2**32 - 1), got {seed}")


def run_command(main: Callable, parse_args: Callable | None, argv=None):
    """`main(parse_args(argv))` (or `main(argv)` when parse_args is None), user errors as one line, exit 2.

    Returns what `main` returned. A command's `cli` (its console script) calls this and returns None: a console
    script runs `sys.exit(cli())`, which would print any other value and exit with status 1.
    """
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


def resolve_pretrained(value: str | os.PathLike, option: str = "--pretrained", hub: bool = True) -> str:
    """What a model argument names, by one rule, checked before anything loads:

    1. a path that exists is that folder (a file is refused: a model is a folder);
    2. else the name of a shipped folder (`cfg-mnistm`; `hub_cards.names()` lists them) is that folder, wherever
       the package is installed, so the commands work from any working folder;
    3. else an `owner/name` Hub id is left to the library to download, if the command reads the Hub (`hub`) and
       HF_HUB_OFFLINE is not set.

    Returns the folder's path (or the Hub id). Anything else fails here, naming the value: a path such as
    `out/model` is also a valid-looking Hub id, and loading it would report a connection error instead.
    """
    text = str(value)
    local = Path(text).expanduser()
    if local.is_dir():
        return text
    if local.exists():
        raise NotADirectoryError(f"{option} {text} is a file; give the model's folder")
    shipped = hub_cards.names()
    if text in shipped:
        return str(hub_cards.path(text))
    parts = text.split("/")
    hub_id = len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text
    if not hub or not hub_id:
        raise FileNotFoundError(
            f"{option} folder {text} does not exist and names no shipped model ({', '.join(shipped)}); check the path"
        )
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{option} folder {text} does not exist, and HF_HUB_OFFLINE is set, so it is not looked up on the "
            "Hub; check the path (or unset HF_HUB_OFFLINE for a Hub id)"
        )
    return text
