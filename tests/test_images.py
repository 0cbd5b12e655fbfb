"""Saving images: A1111's numbered names, filename tags, infotext in the file, parallel saves."""

import datetime
import hashlib
import threading

import pytest
from PIL import Image

from webui.generation import images
from webui.generation.filenames import FilenameInfo, apply_filename_pattern, sanitize_filename_part
from webui.generation.images import date_subfolder, next_sequence_number, read_infotext, save_image, user_comment_exif

INFOTEXT = (
    "a cat, 日本語 and ünïcödé\n"
    "Negative prompt: blurry\n"
    'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 32x24, Note: "a, b"'
)


@pytest.fixture
def image():
    return Image.new("RGB", (32, 24), (200, 100, 50))


def test_names_count_up_from_the_highest_number(tmp_path, image):
    first = save_image(image, tmp_path, seed=1234, prompt="a cat", infotext=None)
    second = save_image(image, tmp_path, seed=1235, prompt="a cat", infotext=None)
    assert (first.name, second.name) == ("00000-1234.png", "00001-1235.png")
    (tmp_path / "00041-999-old.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not numbered")
    third = save_image(image, tmp_path, seed=7, prompt="a cat", infotext=None, pattern="[seed]-[prompt]")
    assert third.name == "00042-7-a_cat.png"
    assert next_sequence_number(tmp_path) == 43


def test_grid_basename_and_empty_pattern(tmp_path, image):
    (tmp_path / "grid-0003.png").write_bytes(b"")
    (tmp_path / "00010-1.png").write_bytes(b"")
    assert next_sequence_number(tmp_path, "grid") == 4
    grid = save_image(image, tmp_path, seed=1, prompt="p", infotext=None, basename="grid", pattern="")
    assert grid.name == "grid-0004.png"
    plain = save_image(image, tmp_path, seed=1, prompt="p", infotext=None, pattern="", suffix="-mask")
    assert plain.name == "00011-mask.png"


def test_infotext_reads_back_exactly_from_png(tmp_path, image):
    path = save_image(image, tmp_path, seed=1, prompt="p", infotext=INFOTEXT, existing_pnginfo={"extra": 5})
    assert read_infotext(path) == INFOTEXT
    with Image.open(path) as saved:
        assert saved.info["parameters"] == INFOTEXT and saved.info["extra"] == "5"
        assert saved.size == image.size
        assert read_infotext(saved) == INFOTEXT
    assert read_infotext(save_image(image, tmp_path, seed=1, prompt="p", infotext=None)) is None


@pytest.mark.parametrize("extension", ["jpg", "jpeg", "webp"])
def test_infotext_in_exif_user_comment(tmp_path, extension):
    rgba = Image.new("RGBA", (16, 16), (1, 2, 3, 255))
    path = save_image(rgba, tmp_path, seed=1, prompt="p", infotext=INFOTEXT, extension=extension)
    assert path.suffix == f".{extension}"
    assert read_infotext(path) == INFOTEXT


def test_user_comment_is_an_undefined_tag_in_utf16():
    block = user_comment_exif("hé")
    assert block.startswith(b"Exif\x00\x00MM\x00*")
    # The UserComment entry (0x9286) has type 7 (UNDEFINED), as piexif writes it for A1111.
    assert b"\x92\x86\x00\x07" in block
    assert block.endswith(b"UNICODE\x00" + "hé".encode("utf_16_be"))


def test_save_txt_and_other_formats(tmp_path, image):
    path = save_image(image, tmp_path, seed=3, prompt="p", infotext=INFOTEXT, save_txt=True)
    assert path.with_suffix(".txt").read_text(encoding="utf8") == INFOTEXT + "\n"
    gif = save_image(image, tmp_path, seed=3, prompt="p", infotext=INFOTEXT, extension="gif")
    assert read_infotext(gif) == INFOTEXT
    with pytest.raises(ValueError):
        save_image(image, tmp_path, seed=3, prompt="p", infotext=None, extension="nope")


def test_concurrent_saves_never_overwrite(tmp_path, monkeypatch):
    count = 24
    paths, errors = [], []
    # Every job counts the files before any of them writes, so all start from number 0
    # and must find free names by claiming them, not by counting.
    counted = threading.Barrier(count)
    count_files = images.next_sequence_number

    def count_together(directory, basename=""):
        number = count_files(directory, basename)
        counted.wait()
        return number

    monkeypatch.setattr(images, "next_sequence_number", count_together)

    def save(i):
        picture = Image.new("RGB", (8, 8), (i, i, i))
        try:
            paths.append(save_image(picture, tmp_path, seed=i, prompt="same", infotext=f"image {i}", pattern=""))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(paths)) == count
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:05}.png" for i in range(count)]
    assert sorted(read_infotext(p) for p in paths) == sorted(f"image {i}" for i in range(count))


def test_a_taken_name_is_skipped(tmp_path, image, monkeypatch):
    # Another job took number 0 after we counted: we move on instead of overwriting it.
    monkeypatch.setattr(images, "next_sequence_number", lambda directory, basename="": 0)
    (tmp_path / "00000-5.png").write_bytes(b"someone else's")
    path = save_image(image, tmp_path, seed=5, prompt="p", infotext=None)
    assert path.name == "00001-5.png"
    assert (tmp_path / "00000-5.png").read_bytes() == b"someone else's"


def test_sanitize_filename_part():
    assert sanitize_filename_part('a b<c>d:e"f/g\\h|i?j*k#l\nm\rn\to') == "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o"
    assert sanitize_filename_part("  lead and trail . ", replace_spaces=False) == "lead and trail"
    assert len(sanitize_filename_part("x" * 500)) == 128
    assert sanitize_filename_part(None) is None


def test_unsafe_prompts_make_safe_names(tmp_path, image):
    prompt = 'cat/dog: "best"?  <lora:x:1> | a\\b * ..'
    path = save_image(image, tmp_path, seed=9, prompt=prompt, infotext=None, pattern="[seed]-[prompt_spaces]")
    assert path.parent == tmp_path
    assert path.name == "00000-9-cat_dog_ _best__  _lora_x_1_ _ a_b _.png"
    long = save_image(image, tmp_path, seed=9, prompt="日本語" * 200, infotext=None, pattern="[prompt]")
    assert len(long.name.encode()) <= 255 and long.exists()


def test_tags(image):
    info = FilenameInfo(
        negative_prompt="ugly",
        steps=20,
        cfg_scale=7.5,
        sampler="DPM++ 2M",
        scheduler="karras",
        model_name="my: model",
        model_hash="abcdef1234",
        vae_name="/models/VAE/.hidden.vae.pt",
        denoising_strength=0.5,
        clip_skip=2,
        styles=["None", "Cinematic"],
        all_seeds=[10, 11, 12],
        batch_size=3,
        batch_index=1,
        n_iter=2,
        iteration=1,
        job_timestamp="20240102030405",
        user="alice",
    )

    def fill(pattern, prompt="A cat, sitting; on a mat!"):
        return apply_filename_pattern(pattern, seed=11, prompt=prompt, image=image, info=info)

    assert fill("[seed]-[SEED_FIRST]-[seed_last]") == "11-10-12"
    assert fill("[steps]_[cfg]_[width]x[height]") == "20_7.5_32x24"
    assert fill("[sampler] [scheduler] [sampler_scheduler]") == "DPM++ 2M Karras DPM++ 2M Karras"
    assert fill("[model_name] [model_hash] [vae_filename]") == "my_ model abcdef1234 hidden"
    assert fill("[styles] [clip_skip] [denoising] [user]") == "Cinematic 2 0.5 alice"
    assert fill("[batch_number]-[batch_size]-[generation_number]") == "2-3-5"
    assert fill("[job_timestamp][none]") == "20240102030405"
    assert fill("[prompt]|[prompt_spaces]") == "A_cat,_sitting;_on_a_mat!|A cat, sitting; on a mat!"
    assert fill("[prompt_words]", "one, two;; three " + " ".join(str(i) for i in range(20))) == (
        "one two three 0 1 2 3 4"
    )
    assert fill("[prompt_words]", "!!!") == "empty"
    assert fill("[prompt_hash]") == hashlib.sha256(b"A cat, sitting; on a mat!").hexdigest()[:8]
    assert fill("[prompt_hash<4>]") == hashlib.sha256(b"A cat, sitting; on a mat!").hexdigest()[:4]
    assert fill("[negative_prompt_hash]") == hashlib.sha256(b"ugly").hexdigest()[:8]
    assert fill("[full_prompt_hash]") == hashlib.sha256(b"A cat, sitting; on a mat! ugly").hexdigest()[:8]
    assert fill("[image_hash<6>]") == hashlib.sha256(image.tobytes()).hexdigest()[:6]
    assert fill("[hasprompt<cat><dog|nodog>]") == "catnodog"
    assert fill("[date]") == datetime.date.today().strftime("%Y-%m-%d")
    assert fill("[datetime<%Y>]") == str(datetime.datetime.now().year)
    assert fill("[datetime<%H><UTC>]") == datetime.datetime.now(datetime.timezone.utc).strftime("%H")
    assert fill("[datetime<%Y/%m>]") == datetime.date.today().strftime("%Y_%m")  # made filename-safe
    assert len(fill("[datetime]")) == 14
    assert fill("[unknown]-[seed]") == "[unknown]-11"


def test_tags_that_skip_or_stay_without_information(image):
    single = FilenameInfo(batch_size=1, n_iter=1, denoising_strength=None)

    def fill(pattern, info):
        return apply_filename_pattern(pattern, seed=5, prompt="p", image=image, info=info)

    # Skipped tags take the text just before them along.
    assert fill("[seed]-[seed_last]-[batch_number]-[generation_number]-[denoising]", single) == "5"
    assert fill("[seed]-[sampler_scheduler]", single) == "5"
    # Without any information the tag stays as written, as in A1111.
    assert fill("[seed]-[steps]-[model_name]", None) == "5-[steps]-[model_name]"
    assert fill("[vae_filename]", single) == "NoneType"


def test_date_subfolder():
    day = datetime.date(2024, 5, 17)
    assert date_subfolder("outputs", "txt2img", day).as_posix() == "outputs/txt2img-images/2024-05-17"
    assert date_subfolder("outputs", "img2img", day).as_posix() == "outputs/img2img-images/2024-05-17"
    assert date_subfolder("outputs", "txt2img-grids", day).as_posix() == "outputs/txt2img-grids/2024-05-17"
    today = datetime.date.today().strftime("%Y-%m-%d")
    assert date_subfolder("outputs", "extras").name == today


def test_saving_creates_the_date_folder(tmp_path, image):
    folder = date_subfolder(tmp_path / "outputs", "txt2img")
    path = save_image(image, folder, seed=1, prompt="p", infotext=INFOTEXT)
    assert path.parent == folder and read_infotext(path) == INFOTEXT
