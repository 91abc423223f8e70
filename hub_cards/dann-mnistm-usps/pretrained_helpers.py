"""What the two transformers models (the DANN model and the digit classifier) share: their configs' equality and
quiet loading and saving.

This file is copied into model folders for `trust_remote_code`, beside the files that import it (remote code may
import only the libraries and its sibling files): it imports only transformers. transformers copies a model's
relative imports from the model file's own folder, so `pipelines/dann/` holds a symbolic link to this file (and to
`image_processing_digits.py`): one source, a sibling in both packages.
"""

from contextlib import contextmanager

from transformers.utils import logging as hf_logging

# Keys a save or a transformers version adds to a config without changing the model it builds.
CONFIG_BOOKKEEPING = ("transformers_version", "dtype", "architectures", "auto_map", "_name_or_path")


def same_model_config(config, other):
    """A config's `__eq__`: two configs that build the same model are equal, whichever transformers version, dtype
    or save (which adds `architectures` and `auto_map`) they went through.

    Assigned in each config class's body (`__eq__ = same_model_config`): transformers turns config classes into
    dataclasses, which would replace an inherited `__eq__` with a field-by-field one.
    """
    if not isinstance(other, type(config)):
        return NotImplemented
    mine, theirs = config.to_dict(), other.to_dict()
    return all(mine.get(k) == theirs.get(k) for k in set(mine) | set(theirs) if k not in CONFIG_BOOKKEEPING)


@contextmanager
def without_progress_bars():
    """A one-file model loads and saves in a blink; transformers' per-shard bars would only clutter the
    commands' stderr, whose errors are one line."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
