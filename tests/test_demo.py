"""The web demo's logic (`pipelines.demo`) on the shipped models, without Gradio: what each tab computes, and
the one-line errors its bad inputs give."""

import pickle

import numpy as np
import PIL.Image
import pytest
import torch

from adapters import load_digits
from pipelines.conditional_ddpm.course_output import main as course_output_main
from pipelines.conditional_ddpm.course_output import parse_args as course_output_args
from pipelines.demo import adapt, digits, faces
from pipelines.demo.models import load_models, shipped_dann


@pytest.fixture(scope="module")
def models():
    return load_models()


def request(digit_values=("3",), per_digit=1, steps=10, seed=0, sampler="dpm", guidance=2.0):
    return digits.make_request(list(digit_values), per_digit, guidance, sampler, steps, seed, "cfg-mnistm-small")


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_page_values_become_a_request_and_bad_ones_are_named():
    assert digits.parse_digits(["3", "7"]) == (3, 7)
    assert digits.parse_digits("0-9") == tuple(range(10))
    assert digits.parse_digits("1, 4") == (1, 4)
    made = digits.make_request(["2"], 3.0, 1.5, "ddim", 20.0, 5.0, "cfg-mnistm")
    assert (made.digits, made.images_per_digit, made.steps, made.seed, made.model) == ((2,), 3, 20, 5, "cfg-mnistm")
    with pytest.raises(ValueError, match="digits must be whole numbers 0-9, got '12'"):
        digits.parse_digits(["12"])
    with pytest.raises(ValueError, match="choose at least one digit"):
        digits.parse_digits([])
    with pytest.raises(ValueError, match="images per digit must be between 1 and 10, got 11"):
        request(per_digit=11)
    with pytest.raises(ValueError, match="steps .* must be a whole number, got 2.5"):
        request(steps=2.5)
    with pytest.raises(ValueError, match="sampler must be one of"):
        request(sampler="euler")


def test_one_digit_is_generated_and_read_by_the_scoring_classifier(models):
    rows = list(digits.generate_rows(models, request(("3",), per_digit=2)))
    assert len(rows) == 1
    images, verdicts = rows[0]
    assert [image.size for image in images] == [(28, 28), (28, 28)]
    assert [v.digit for v in verdicts] == [3, 3]
    assert all(v.correct and v.confidence > 0.5 for v in verdicts), verdicts
    assert verdicts[0].caption() == f"3→3 {verdicts[0].confidence:.2f}"
    assert digits.Verdict(3, 8, 0.6).caption() == "✗ 3→8 0.60"


def test_an_image_depends_on_its_seed_digit_and_index_only(models):
    alone = list(digits.generate_rows(models, request(("3",))))[-1][0]
    # digit 3 after a row of 7s: the same first 3, so no request sees another's noise
    mixed = list(digits.generate_rows(models, request(("7", "3"))))[-1][0]
    other_seed = list(digits.generate_rows(models, request(("3",), seed=1)))[-1][0]
    np.testing.assert_array_equal(pixels(alone[0]), pixels(mixed[1]))
    assert not np.array_equal(pixels(alone[0]), pixels(other_seed[0]))


def test_the_grid_equals_the_course_output_command_for_the_same_seed(models, tmp_path):
    images = list(digits.generate_rows(models, request(("4",), per_digit=2, seed=3)))[-1][0]
    args = course_output_args(
        [
            "--pretrained",
            "hub_cards/cfg-mnistm-small",
            "--output_dir",
            str(tmp_path / "out"),
            "--digits",
            "4",
            "--images_per_digit",
            "2",
            "--scheduler",
            "dpm",
            "--num_inference_steps",
            "10",
            "--seed",
            "3",
        ]
    )
    written = course_output_main(args)
    for image, path in zip(images, written, strict=True):
        np.testing.assert_array_equal(pixels(image), pixels(PIL.Image.open(path)))


def test_rows_come_one_digit_at_a_time_with_progress(models):
    seen = []
    rows = digits.generate_rows(models, request(("1", "2"), steps=4), lambda done, total, what: seen.append(done))
    counts = [len(images) for images, _ in rows]
    assert counts == [1, 2]
    assert seen == list(range(1, 9))  # every step of both rows, out of 2 x 4


def test_steps_of_zero_are_refused_with_the_pipelines_words(models):
    with pytest.raises(ValueError, match="num_inference_steps must be an int between 1 and the 400 steps"):
        next(digits.generate_rows(models, request(steps=0)))
    with pytest.raises(ValueError, match="num_inference_steps must be an int between 1"):
        digits.reverse_process(models, request(steps=0))


def test_the_reverse_process_ends_at_the_grids_first_image(models):
    frames = digits.reverse_process(models, request(("5",)))
    grid = list(digits.generate_rows(models, request(("5",))))[-1][0]
    timesteps = [t for t, _ in frames]
    assert timesteps[0] == 400 and timesteps[-1] == 0 and timesteps == sorted(timesteps, reverse=True)
    assert len(frames) == 11  # 10 DPM-Solver steps: every visited x_t
    np.testing.assert_array_equal(pixels(frames[-1][1]), pixels(grid[0]))
    assert not np.array_equal(pixels(frames[0][1]), pixels(frames[-1][1]))


def test_frames_are_spread_over_long_samplers():
    visited = list(range(401))
    frames = digits.frame_timesteps(visited)
    assert len(frames) == digits.MAX_FRAMES
    assert frames[0] == 400 and frames[-1] == 0 and frames[5] == 200


def test_sampler_default_steps(models):
    assert digits.sampler_default_steps(models, "cfg-mnistm-small", "ddpm") == 400
    assert digits.sampler_default_steps(models, "cfg-mnistm-small", "dpm") == 10
    assert digits.sampler_default_steps(models, "cfg-mnistm-small", "ddim") == 50


def test_requests_share_weights_but_not_schedulers(models):
    first = models.digit_pipeline("cfg-mnistm-small", "ddim")
    second = models.digit_pipeline("cfg-mnistm-small", "ddim")
    template = models.digit_pipelines["cfg-mnistm-small"]
    assert first.unet is second.unet is template.unet
    assert first.scheduler is not second.scheduler
    first.scheduler.set_timesteps(7)
    assert len(second.scheduler.timesteps) != 7
    with pytest.raises(ValueError, match="model must be one of"):
        models.digit_pipeline("cfg-nothing", "dpm")


def test_ddim_pair_interpolates_between_the_two_noises(models):
    def pair(alpha, interpolation="slerp"):
        return faces.ddim_pair(models, models.face_noises, "00", "01", 0.0, 10, 0, alpha, interpolation)

    at_a, at_b = pair(0.0), pair(1.0)
    np.testing.assert_array_equal(pixels(at_a[1][0]), pixels(at_a[0][0]))  # alpha 0 is noise A
    np.testing.assert_array_equal(pixels(at_b[1][0]), pixels(at_b[2][0]))  # alpha 1 is noise B
    slerp_caption, lerp_caption = pair(0.5)[1][1], pair(0.5, "lerp")[1][1]
    assert slerp_caption.startswith("slerp alpha = 0.5")
    norm = float(lerp_caption.rsplit("= ", 1)[1])
    assert norm < 0.8 * float(slerp_caption.rsplit("= ", 1)[1])  # lerp shrinks the noise, slerp does not
    with pytest.raises(ValueError, match="noise A '42' is not among the noises"):
        faces.ddim_pair(models, models.face_noises, "42", "01", 0.0, 10, 0, 0.5, "slerp")
    with pytest.raises(ValueError, match="eta must be a number in"):
        faces.ddim_pair(models, models.face_noises, "00", "01", 1.5, 10, 0, 0.5, "slerp")
    with pytest.raises(ValueError, match="alpha must be a number in"):
        faces.ddim_pair(models, models.face_noises, "00", "01", 0.0, 10, 0, -0.1, "slerp")


def test_uploaded_noises_are_loaded_safely_and_checked(models, tmp_path):
    shape = models.face_noise_shape()
    good = tmp_path / "07.pt"
    torch.save(models.face_noises["03"].unsqueeze(0), good)  # the course's [1, C, H, W]
    uploaded = faces.noise_set(models, [str(good)])
    assert list(uploaded) == ["07"]
    from_upload = faces.ddim_pair(models, uploaded, "07", "07", 0.0, 10, 0, 0.5, "slerp")[0][0]
    shipped = faces.ddim_pair(models, models.face_noises, "03", "03", 0.0, 10, 0, 0.5, "slerp")[0][0]
    np.testing.assert_array_equal(pixels(from_upload), pixels(shipped))

    wrong = tmp_path / "00.pt"
    torch.save(torch.randn(1, 3, 256, 256), wrong)
    with pytest.raises(ValueError, match=r"00.pt: expected shape \(1, 32, 32\)"):
        faces.read_uploaded_noises([wrong], shape)

    marker = tmp_path / "code-ran"

    class RunsCode:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    trap = tmp_path / "01.pt"
    trap.write_bytes(pickle.dumps({"noise": RunsCode()}))
    with pytest.raises(ValueError, match=r"01.pt: refused .*weights_only=True\) reads plain tensors only"):
        faces.read_uploaded_noises([trap], shape)
    assert not marker.exists()

    text = tmp_path / "02.txt"
    text.write_text("not a tensor")
    with pytest.raises(ValueError, match="02.txt: expected a .pt noise file"):
        faces.read_uploaded_noises([text], shape)
    with pytest.raises(ValueError, match="upload at most 10 noise files"):
        faces.read_uploaded_noises([good] * 11, shape)


def test_the_eta_grid_grows_a_row_at_a_time(models):
    figures = list(faces.eta_grid(models, models.face_noises, 5, 0))
    assert len(figures) == len(faces.ETAS) == 10
    heights = [figure.size[1] for figure in figures]
    assert heights == sorted(heights) and heights[0] < heights[-1]
    with pytest.raises(ValueError, match="steps .* must be a whole number"):
        next(faces.eta_grid(models, models.face_noises, 5.5, 0))


def test_uploads_that_are_no_image_or_too_large_are_refused(tmp_path):
    fake = tmp_path / "digit.png"
    fake.write_text("hello")
    with pytest.raises(ValueError, match="digit.png is not an image PIL can read"):
        adapt.open_digit_image(fake)
    huge = tmp_path / "huge.png"
    PIL.Image.new("L", (5000, 20)).save(huge)
    with pytest.raises(ValueError, match="huge.png is 5000x20 pixels; the demo takes images up to 4096x4096"):
        adapt.open_digit_image(huge)
    small = tmp_path / "small.png"
    PIL.Image.new("RGB", (16, 16), "white").save(small)
    assert adapt.open_digit_image(small).size == (16, 16)


def test_a_drawing_becomes_light_strokes_on_black():
    canvas = np.zeros((40, 40, 4), dtype=np.uint8)  # transparent
    canvas[10:30, 18:22] = (0, 0, 0, 255)  # a black bar
    digit = np.asarray(adapt.drawing_to_digit(canvas))
    assert digit[20, 20] == 255 and digit[0, 0] == 0
    white = np.full((40, 40, 3), 255, dtype=np.uint8)
    with pytest.raises(ValueError, match="the drawing is empty"):
        adapt.drawing_to_digit(white)
    with pytest.raises(ValueError, match="expected a drawing as an H x W x 3 or 4 uint8 array"):
        adapt.drawing_to_digit(np.zeros((40, 40), dtype=np.uint8))


def test_the_adapted_model_reads_usps_digits_uploaded_or_drawn(models):
    usps = load_digits("usps", split="validation").select(range(20))
    uploaded_right = drawn_right = 0
    for example in usps:
        image = example["image"].convert("L").resize((280, 280), PIL.Image.BILINEAR)
        result = adapt.adapt(models, image)
        probabilities = result["adapted"]
        assert abs(sum(probabilities.values()) - 1) < 1e-5
        uploaded_right += max(probabilities, key=probabilities.get) == str(example["label"])
        # as the sketchpad gives it: black ink where the digit is, transparent elsewhere
        drawing = np.zeros((280, 280, 4), dtype=np.uint8)
        drawing[..., 3] = np.asarray(image)
        drawn = adapt.adapt(models, adapt.drawing_to_digit(drawing))["adapted"]
        drawn_right += max(drawn, key=drawn.get) == str(example["label"])
        assert result["input"].size == (28, 28) and result["source_only"] is None
    assert uploaded_right >= 18 and drawn_right >= 18, (uploaded_right, drawn_right)


def test_the_page_says_why_no_source_only_model_answers(models):
    assert [card.folder.name for card in shipped_dann("mnistm", "usps", "mean_teacher")] == ["dann-mnistm-usps"]
    assert shipped_dann("mnistm", "usps", "source_only") == []
    assert models.source_only is None
    note = adapt.source_only_note(models)
    assert note.startswith("No source-only model ships")
    assert "--modes source_only" in note
