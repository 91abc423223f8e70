"""What the two transformers models (the DANN model and the digit classifier) share: their configs' class names
and equality, and quiet loading and saving.

This file is copied into model folders for `trust_remote_code`, beside the files that import it (remote code may
import only the libraries and its sibling files): it imports only transformers. transformers copies a model's
relative imports from the model file's own folder, so `pipelines/dann/` holds a symbolic link to this file (and to
`image_processing_digits.py`): one source, a sibling in both packages.
"""

from contextlib import contextmanager

from transformers.utils import logging as hf_logging

# Keys a save or a transformers version adds to a config without changing the model it builds.
CONFIG_BOOKKEEPING = ("transformers_version", "dtype", "architectures", "auto_map", "_name_or_path")


def name_digit_classes(config) -> None:
    """In a config's `__post_init__`, before transformers': at least two classes, and class d named "d" (what the
    image-classification pipeline prints) unless the config names them itself."""
    if config.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {config.num_classes}")
    if config.id2label is None:
        config.id2label = {i: str(i) for i in range(config.num_classes)}
        config.label2id = {str(i): i for i in range(config.num_classes)}


def check_class_names(config) -> None:
    """In a config's `__post_init__`, after transformers': one name per class."""
    if config.num_labels != config.num_classes:
        raise ValueError(f"id2label names {config.num_labels} classes but num_classes is {config.num_classes}")


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
