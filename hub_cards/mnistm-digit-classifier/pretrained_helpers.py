"""What the two transformers models (the DANN model and the digit classifier) share: their configs' class names
and equality, loading that refuses weights which do not fill the model, and quiet loading and saving.

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


def load_whole_model(load, model_class, pretrained_model_name_or_path, *args, **kwargs):
    """A model's `from_pretrained` (`load`, transformers' own) that refuses weights which do not fill the model.

    transformers leaves weights a checkpoint lacks at random and ignores the ones the model lacks, with a warning:
    a folder of another model (a digit classifier given as a DANN model) would load and label every image the same.
    Here every weight of the model must come from the folder and every weight of the folder must be used.
    """
    wants_info = kwargs.pop("output_loading_info", False)
    kwargs.setdefault("ignore_mismatched_sizes", True)  # report weights of another shape here, with the others
    with without_progress_bars():
        model, info = load(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
    kinds = (
        ("missing_keys", "weights missing"),
        ("unexpected_keys", "weights not part of it"),
        ("mismatched_keys", "weights of another shape"),
    )
    problems = [
        f"{len(info[key])} {what} (e.g. {', '.join(sorted(map(str, info[key]))[:3])})"
        for key, what in kinds
        if info.get(key)
    ]
    if problems:
        raise ValueError(
            f"{pretrained_model_name_or_path} does not hold a {model_class.__name__} "
            f"(a {model_class.config_class.model_type} model): {'; '.join(problems)}"
        )
    return (model, info) if wants_info else model
