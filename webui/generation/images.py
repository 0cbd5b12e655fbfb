"""Saving images as A1111 does: numbered file names (their pattern part: filenames.py), infotext inside the file.

A saved file is named `<5-digit number>-<pattern filled in>.<ext>`, for example
`00042-1234567.png`, in `outputs/txt2img-images/<YYYY-MM-DD>/`. The number is one more
than the highest number already in the folder. The infotext goes into the PNG `parameters`
text chunk, or the EXIF UserComment for JPEG and WebP, where A1111 puts it.

Two jobs may save into one folder at the same time: a name is claimed exclusively, so a taken
number is never overwritten and the saver moves on to the next one. A file gets its name only
once it is complete (see `_claim`), so a crash while saving never leaves a partial image behind.
"""

from __future__ import annotations

import datetime
import io
import os
import secrets
import struct
from collections.abc import Mapping
from pathlib import Path

from PIL import ExifTags, Image, PngImagePlugin

from .filenames import FilenameInfo, apply_filename_pattern
from .hooks import GenerationHooks, ImageSave

INFOTEXT_KEY = "parameters"  # PNG text chunk A1111 reads the infotext from
JPEG_QUALITY = 80  # A1111's default "jpeg_quality"
MAX_SEQUENCE_TRIES = 100_000

# EXIF UserComment: an 8-byte character-code prefix, then the text (Exif 2.3, table 9).
_USER_COMMENT_CODES = {
    b"UNICODE\0": "utf_16_be",
    b"ASCII\0\0\0": "ascii",
    b"JIS\0\0\0\0\0": "shift_jis",
}


def next_sequence_number(directory: Path, basename: str = "") -> int:
    """One more than the highest number a file in `directory` starts with (0 for none).

    As A1111: a name counts when it starts with `basename-` (or anything, without a
    basename) followed by digits up to the first "-" or the extension.
    """
    prefix = f"{basename}-" if basename else ""
    highest = -1
    for name in os.listdir(directory):
        # Hidden names are not images: among them the temporary files of saves in progress or cut short.
        if name.startswith(prefix) and not name.startswith("."):
            first = os.path.splitext(name[len(prefix):])[0].split("-")[0]
            try:
                highest = max(highest, int(first))
            except ValueError:
                pass
    return highest + 1


def dated(folder: Path, date: datetime.date | None = None) -> Path:
    """`folder/<YYYY-MM-DD>`: the day's subfolder a job saves its images in."""
    return Path(folder) / (date or datetime.date.today()).strftime("%Y-%m-%d")


def date_subfolder(root: Path, kind: str, date: datetime.date | None = None) -> Path:
    """`root/<kind>-images/<YYYY-MM-DD>`, A1111's default output folder ("txt2img", "img2img",
    "extras"); a kind that already ends in -images or -grids ("txt2img-grids") is kept."""
    folder = kind if kind.endswith(("-images", "-grids")) else f"{kind}-images"
    return dated(Path(root) / folder, date)


class OutputFolderError(Exception):
    """Images cannot be saved in the outputs folder; the message says which folder and why."""


def output_folder_problem(folder: Path, create: bool = False, shown_from: Path | None = None) -> str | None:
    """Why images cannot be saved in `folder`, or None when they can.

    With `create` the folder is made as saving would make it; without, nothing is created and the
    deepest part that exists is looked at (for the check at start). Either way a real file is
    created and removed there, which tells a read-only mount or missing permission apart from a
    writable folder better than the permission bits (root passes those everywhere). With `shown_from` (the data
    folder) paths in the message are relative to it, and one outside it (an output folder the settings put
    elsewhere) shows only its last part: no server paths in replies.
    """
    folder = Path(folder).absolute()
    shown_from = Path(shown_from).absolute() if shown_from is not None else None

    def shown(path: Path) -> str:
        if shown_from is None:
            return str(path)
        return str(path.relative_to(shown_from)) if path.is_relative_to(shown_from) else f".../{path.name}"

    existing = next((part for part in (folder, *folder.parents) if part.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{shown(existing)} is a file, not a folder"
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"{shown(folder)} cannot be created ({error.strerror or error})"
        existing = folder
    if existing is None:
        return None
    try:
        _write_temp_file(existing, b"").unlink()
    except OSError as error:
        return f"{shown(existing)} is not writable ({error.strerror or error})"
    return None


def check_output_folder(folder: Path, shown_from: Path | None = None) -> None:
    """Make `folder` and make sure images can be saved there, before a job spends compute on them;
    raises `OutputFolderError` (a problem of the server's setup, not of the request)."""
    problem = output_folder_problem(folder, create=True, shown_from=shown_from)
    if problem is not None:
        raise OutputFolderError(f"cannot save images: {problem}; fix the outputs folder on the server")


def user_comment_exif(text: str) -> bytes:
    """An EXIF block holding only a UserComment with `text` in UTF-16, as A1111 (piexif) writes it.

    Written by hand because Pillow would type the comment BYTE instead of UNDEFINED, which
    A1111's reader (piexif) does not decode.
    """
    comment = b"UNICODE\0" + text.encode("utf_16_be")
    exif_ifd_offset = 8 + 2 + 12 + 4  # header, then IFD0 with one entry
    data_offset = exif_ifd_offset + 2 + 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)
    tiff += struct.pack(">HHHII", 1, ExifTags.IFD.Exif, 4, 1, exif_ifd_offset) + struct.pack(">I", 0)
    tiff += struct.pack(">HHHII", 1, ExifTags.Base.UserComment, 7, len(comment), data_offset) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + tiff + comment


def _decode_user_comment(data: bytes) -> str:
    encoding = _USER_COMMENT_CODES.get(bytes(data[:8]))
    if encoding is None:
        return bytes(data).decode("utf8", errors="ignore")
    return bytes(data[8:]).decode(encoding, errors="replace")


def encode_image(
    image: Image.Image,
    extension: str,
    infotext: str | None,
    *,
    existing_pnginfo: Mapping[str, object] | None = None,
    jpeg_quality: int = JPEG_QUALITY,
    webp_lossless: bool = False,
) -> bytes:
    """The file's bytes, with the infotext where A1111 puts it for that format."""
    extension = extension.lower().lstrip(".")
    image_format = Image.registered_extensions().get(f".{extension}")
    if image_format is None:
        raise ValueError(f"unsupported image format: {extension!r}")
    buffer = io.BytesIO()
    if extension == "png":
        pnginfo = PngImagePlugin.PngInfo()
        texts = dict(existing_pnginfo or {})
        if infotext is not None:
            texts[INFOTEXT_KEY] = infotext
        for key, value in texts.items():
            pnginfo.add_text(key, str(value))  # non-Latin-1 text becomes an iTXt chunk
        image.save(buffer, format=image_format, pnginfo=pnginfo)
    elif extension in ("jpg", "jpeg", "webp"):
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        options: dict[str, object] = {"quality": jpeg_quality}
        if extension == "webp":
            options["lossless"] = webp_lossless
        if infotext is not None:
            options["exif"] = user_comment_exif(infotext)
        image.save(buffer, format=image_format, **options)
    elif extension == "gif" and infotext is not None:
        image.save(buffer, format=image_format, comment=infotext)
    else:
        image.save(buffer, format=image_format)
    return buffer.getvalue()


def _fit_name(stem: str, extension: str, directory: Path) -> str:
    """Cut the stem so that the name fits the file system's limit (counted in bytes)."""
    try:
        limit = os.statvfs(directory).f_namemax
    except (AttributeError, OSError):
        limit = 255
    budget = limit - len(f".{extension}".encode())
    encoded = stem.encode()
    if len(encoded) <= budget:
        return stem
    return encoded[:budget].decode(errors="ignore").rstrip(" .")


def _write_temp_file(directory: Path, data: bytes) -> Path:
    """`data` in a new hidden file `.<random>.tmp` in `directory` (the counter ignores hidden names).

    Written to disk (fsync) before it gets its real name, so that even a power cut cannot leave
    the name pointing at an empty file. Created with the usual mode (0o666 less the umask).
    """
    while True:
        path = directory / f".{secrets.token_hex(8)}.tmp"
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _claim(temp_path: Path, path: Path) -> bool:
    """Give the complete file `temp_path` the name `path` unless that name exists; False when it was taken.

    A hard link is made in one step and fails on an existing name, so a taken number is never
    overwritten and no reader (or crash) ever sees the name on a partial file. On file systems
    without hard links (FAT, some network shares) the name is reserved with an exclusive create
    and the complete file renamed over it: the name is empty only between those two calls.
    """
    try:
        os.link(temp_path, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here
        pass
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        return False
    os.replace(temp_path, path)
    return True


def save_image(
    image: Image.Image,
    directory: Path,
    *,
    seed: int | None,
    prompt: str | None,
    infotext: str | None,
    pattern: str = "[seed]",
    extension: str = "png",
    info: FilenameInfo | None = None,
    basename: str = "",
    suffix: str = "",
    existing_pnginfo: Mapping[str, object] | None = None,
    jpeg_quality: int = JPEG_QUALITY,
    webp_lossless: bool = False,
    save_txt: bool = False,
    hooks: GenerationHooks | None = None,
) -> Path:
    """Save `image` under the next free number in `directory` (created if needed); its path.

    The name is `NNNNN-<pattern>` (or `<basename>-NNNN-<pattern>` with a basename, for
    grids), then `suffix`, then the extension. An empty pattern gives just the number.
    With `save_txt` the infotext also goes to a `.txt` file of the same name. `hooks` see the
    image, its path and text chunks first and may change them (A1111's on_before_image_saved).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extension = extension.lower().lstrip(".")
    # JPEG and WebP cannot hold sides this long; A1111 saves such images as PNG.
    too_big_for_jpeg = extension in ("jpg", "jpeg") and max(image.size) > 65535
    if too_big_for_jpeg or (extension == "webp" and max(image.size) > 16383):
        extension = "png"

    decoration = f"-{pattern}" if pattern else ""
    decoration = apply_filename_pattern(decoration, seed=seed, prompt=prompt, image=image, info=info) + suffix
    number = next_sequence_number(directory, basename)
    saving = None
    if hooks is not None:
        proposed = directory / f"{_fit_name(_counter(number, basename) + decoration, extension, directory)}.{extension}"
        texts = {**(existing_pnginfo or {}), **({INFOTEXT_KEY: infotext} if infotext is not None else {})}
        saving = ImageSave(image, str(proposed), texts)
        hooks.before_image_saved(saving)
        image, texts = saving.image, dict(saving.pnginfo)
        infotext, existing_pnginfo = texts.pop(INFOTEXT_KEY, None), texts
        if Path(saving.filename) != proposed:  # the hook chose the file: written there, as A1111 does
            extension = Path(saving.filename).suffix.lstrip(".").lower() or extension
    data = encode_image(
        image,
        extension,
        infotext,
        existing_pnginfo=existing_pnginfo,
        jpeg_quality=jpeg_quality,
        webp_lossless=webp_lossless,
    )

    if saving is not None and Path(saving.filename) != proposed:
        path = Path(saving.filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_file(path, data)
    else:
        temp_path = _write_temp_file(directory, data)
        try:
            for _ in range(MAX_SEQUENCE_TRIES):
                path = directory / f"{_fit_name(_counter(number, basename) + decoration, extension, directory)}.{extension}"
                if _claim(temp_path, path):
                    break
                number += 1  # taken, by another job or an older file: try the next number
            else:
                raise FileExistsError(f"no free file name in {directory}")
        finally:
            temp_path.unlink(missing_ok=True)  # the image lives on under its name (a second link)

    if save_txt and infotext is not None:
        _replace_file(path.with_suffix(".txt"), (infotext + "\n").encode("utf8"))
    if saving is not None:
        saving.filename = str(path)
        hooks.image_saved(saving)
    return path


def _counter(number: int, basename: str) -> str:
    return f"{number:05}" if not basename else f"{basename}-{number:04}"


def _replace_file(path: Path, data: bytes) -> None:
    """Write `data` as `path` in one step (a complete temporary file renamed over it)."""
    temp_path = _write_temp_file(path.parent, data)
    try:
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def read_infotext(source: Path | str | Image.Image) -> str | None:
    """The infotext stored in an image file or opened image, or None.

    As A1111: the PNG `parameters` text, overridden by a non-empty EXIF UserComment
    (JPEG, WebP); a GIF's comment otherwise.
    """
    if isinstance(source, Image.Image):
        return _infotext_of(source)
    with Image.open(source) as image:
        return _infotext_of(image)


def _infotext_of(image: Image.Image) -> str | None:
    info = dict(image.info or {})
    text = info.get(INFOTEXT_KEY)
    if text is None and image.format == "PNG":
        text = getattr(image, "text", {}).get(INFOTEXT_KEY)  # a chunk after the image data
    if "exif" in info:
        comment = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
        if comment:
            decoded = comment if isinstance(comment, str) else _decode_user_comment(bytes(comment))
            if decoded:
                text = decoded
    elif "comment" in info:
        comment = info["comment"]
        text = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else comment
    return text
