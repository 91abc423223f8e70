"""Data adapters: every digit source as a `datasets.Dataset`, and the course's DDIM face inputs."""

from adapters.digit_sources import DigitSourceError
from adapters.digits import (
    DIGIT_DATASETS,
    HubUnavailableError,
    decode_digits,
    digit_pixel_values,
    digit_transform,
    embedded_path,
    load_digits,
    read_image_file,
    to_model_range,
    to_uint8,
)
from adapters.faces import (
    check_noise,
    face_mse,
    load_face_images,
    load_face_noises,
    load_lfw_faces,
    read_face_image,
    save_face_noises,
)
from adapters.folders import (
    check_output_dir,
    write_file_atomically,
    write_folder_atomically,
    write_text_atomically,
)

__all__ = [
    "DIGIT_DATASETS",
    "DigitSourceError",
    "HubUnavailableError",
    "decode_digits",
    "digit_pixel_values",
    "digit_transform",
    "embedded_path",
    "load_digits",
    "read_image_file",
    "to_model_range",
    "to_uint8",
    "check_noise",
    "face_mse",
    "load_face_images",
    "load_face_noises",
    "load_lfw_faces",
    "read_face_image",
    "save_face_noises",
    "check_output_dir",
    "write_file_atomically",
    "write_folder_atomically",
    "write_text_atomically",
]
