"""What every API route shares: who the caller is, Basic auth, errors, images in and out.

Who is the caller (the owner of the jobs it submits, the only one allowed to interrupt or
skip them): with --api-auth, the Basic-auth user name ("user:<name>"); without it, the
client's address plus an optional `X-Client-Id` header ("ip:<host>" or "ip:<host>/<id>").
Without --api-auth the header is taken on trust: clients behind one address can tell
themselves apart with it, but nothing stops one from claiming another's id.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image, UnidentifiedImageError

from ..generation.images import encode_image
from ..models.discovery import CheckpointInfo, CheckpointNotFound
from ..state import SharedState

MAX_IMAGE_PIXELS = 4096 * 4096  # larger uploads are refused before they are decoded
_basic = HTTPBasic(auto_error=False)


class BasicAuth:
    """A dependency that admits only the --api-auth users, comparing in constant time."""

    def __init__(self, credentials: dict[str, str]):
        self.credentials = credentials

    def __call__(self, request: Request, given: HTTPBasicCredentials | None = Depends(_basic)) -> None:
        if not self.credentials:
            return
        if given is not None:
            ok = False
            # Every entry is compared, so the time taken does not tell which user names exist.
            for user, password in self.credentials.items():
                same_user = secrets.compare_digest(given.username.encode(), user.encode())
                same_password = secrets.compare_digest(given.password.encode(), password.encode())
                ok |= same_user and same_password
            if ok:
                request.state.api_user = given.username
                return
        raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})


def caller(request: Request) -> str:
    user = getattr(request.state, "api_user", None)
    if user is not None:
        return f"user:{user}"
    host = request.client.host if request.client else "unknown"
    client_id = request.headers.get("x-client-id", "").strip()[:64]
    return f"ip:{host}/{client_id}" if client_id else f"ip:{host}"


def decode_image(data: str, field: str) -> Image.Image:
    """A PIL image from base64 (optionally a data: URI); a 400 naming the field otherwise."""
    if not isinstance(data, str) or not data:
        raise HTTPException(400, f"{field}: expected a base64-encoded image")
    if data.startswith(("http://", "https://")):
        raise HTTPException(400, f"{field}: image URLs are not accepted; send the image as base64")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{field}: invalid base64") from None
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only: the size is known before decoding
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise HTTPException(400, f"{field}: image is {image.width}x{image.height}; "
                                     f"at most {MAX_IMAGE_PIXELS} pixels are accepted")
        image.load()
    except HTTPException:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(400, f"{field}: not a readable image ({error})") from None
    return image


def encode_png(image: Image.Image, infotext: str | None) -> str:
    return base64.b64encode(encode_image(image, "png", infotext)).decode("ascii")


def known_checkpoint(state: SharedState, name: str, field: str) -> CheckpointInfo:
    """A checkpoint from the models folders by name; never a path elsewhere on disk."""
    try:
        info = state.models.find(name)
    except CheckpointNotFound:
        info = None
    if info is None or not any(c.path == info.path for c in state.models.checkpoints()):
        raise HTTPException(404, f"{field}: no checkpoint named {name!r}")
    return info
