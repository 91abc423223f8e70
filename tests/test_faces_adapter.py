"""Face inputs for DDIM: noise folders, ground-truth folders, LFW crops, and each bad input."""

import numpy as np
import PIL.Image
import pytest
import torch

from adapters.faces import face_mse, load_face_images, load_face_noises, load_lfw_faces, save_face_noises


def test_saved_noises_have_the_course_format_and_are_seeded(tmp_path):
    save_face_noises(tmp_path / "a", num_noises=3, shape=(3, 8, 8), seed=5)
    save_face_noises(tmp_path / "b", num_noises=3, shape=(3, 8, 8), seed=5)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["00.pt", "01.pt", "02.pt"]
    raw = torch.load(tmp_path / "a" / "00.pt", weights_only=True)
    assert raw.shape == (1, 3, 8, 8) and raw.dtype == torch.float32
    a, b = load_face_noises(tmp_path / "a"), load_face_noises(tmp_path / "b", shape=(3, 8, 8))
    assert list(a) == ["00", "01", "02"] and a["00"].shape == (3, 8, 8)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["00"], a["01"])


def test_noise_without_batch_dimension_is_accepted(tmp_path):
    torch.save(torch.randn(1, 4, 4), tmp_path / "00.pt")
    assert load_face_noises(tmp_path)["00"].shape == (1, 4, 4)


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.randn(2, 3, 4, 4), "expected shape"),
        (torch.randn(4, 4), "expected shape"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.int64), "floating point"),
        (torch.full((1, 3, 4, 4), float("inf")), "NaN or infinite"),
        (torch.full((1, 3, 4, 4), 1e30), "values reach 1e\\+30 in magnitude"),  # DDIM would overflow: black
        (torch.linspace(0, 255, 48).reshape(1, 3, 4, 4), "initial noise is standard normal"),  # an image, not noise
        ({"noise": torch.randn(3, 4, 4)}, "torch.Tensor"),
    ],
)
def test_each_bad_noise_file_is_a_clear_error(tmp_path, content, message):
    torch.save(content, tmp_path / "00.pt")
    with pytest.raises(ValueError, match=message) as error:
        load_face_noises(tmp_path)
    assert "00.pt" in str(error.value)


def test_noise_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_face_noises(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no NN.pt"):
        load_face_noises(tmp_path)
    torch.save(torch.randn(1, 3, 4, 4), tmp_path / "00.pt")
    torch.save(torch.randn(1, 3, 5, 5), tmp_path / "01.pt")
    with pytest.raises(ValueError, match="01.pt"):
        load_face_noises(tmp_path)
    with pytest.raises(ValueError, match=r"expected shape \(3, 8, 8\)"):
        load_face_noises(tmp_path, shape=(3, 8, 8))
    (tmp_path / "01.pt").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="weights_only"):
        load_face_noises(tmp_path)


def test_a_pickled_object_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "00.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_face_noises(tmp_path)


def save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)


def test_mse_is_computed_in_float_on_the_0_255_scale(tmp_path):
    save_png(tmp_path / "gt" / "00.png", np.full((4, 4, 3), 255))
    save_png(tmp_path / "pred" / "00.png", np.zeros((4, 4, 3)))  # uint8 arithmetic would give 1, not 255^2
    save_png(tmp_path / "gt" / "01.png", np.full((4, 4), 10))
    save_png(tmp_path / "pred" / "01.png", np.full((4, 4), 13))
    save_png(tmp_path / "pred" / "99.png", np.zeros((4, 4)))  # extra predictions are ignored
    assert face_mse(tmp_path / "pred", tmp_path / "gt") == {"00": 255.0**2, "01": 9.0}
    assert load_face_images(tmp_path / "gt")["01"].shape == (4, 4, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .png"):
        face_mse(tmp_path, tmp_path)
    save_png(tmp_path / "gt" / "00.png", np.zeros((4, 4, 3)))
    save_png(tmp_path / "gt" / "01.png", np.zeros((4, 4, 3)))
    save_png(tmp_path / "pred" / "00.png", np.zeros((5, 4, 3)))
    with pytest.raises(FileNotFoundError, match="prediction folder"):
        face_mse(tmp_path / "nothing", tmp_path / "gt")
    with pytest.raises(ValueError, match="00.png: prediction is 4x5"):
        face_mse(tmp_path / "pred", tmp_path / "gt")
    save_png(tmp_path / "pred" / "00.png", np.zeros((4, 4, 3)))
    with pytest.raises(FileNotFoundError, match="01.png is missing"):
        face_mse(tmp_path / "pred", tmp_path / "gt")
    save_png(tmp_path / "pred" / "01.png", np.zeros((4, 4, 4)), mode="RGBA")
    with pytest.raises(ValueError, match="mode RGBA"):
        face_mse(tmp_path / "pred", tmp_path / "gt")


def test_lfw_faces_from_shared_data(shared_data):
    faces = load_lfw_faces(shared_data / "lfw_faces")
    assert len(faces) == 100
    assert faces[0]["image"].size == (25, 25) and faces[0]["image"].mode == "L"
    with pytest.raises(FileNotFoundError, match="parquet"):
        load_lfw_faces(shared_data / "no_such_folder")


def test_corrupt_lfw_parquet_names_the_file(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(ValueError, match=r"train\.parquet is a corrupt or truncated parquet file"):
        load_lfw_faces(tmp_path)
