"""What every API route shares: who the caller is, Basic auth, errors, images in and out.

Who is the caller (the owner of the jobs it submits, the only one allowed to follow, interrupt
or skip them): with a login, the user name ("user:<name>"); without one, the client's address
plus an optional `X-Client-Id` header ("ip:<host>" or "ip:<host>/<id>"). Without a login the
header is taken on trust: clients behind one address can tell themselves apart with it, but
nothing stops one from claiming another's id.
"""

from __future__ import annotations

import base64
import binascii
import io

from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError

from ..auth import Access, Throttled
from ..generation.images import encode_image
from ..models.discovery import CheckpointInfo, CheckpointNotFound
from ..state import SharedState

MAX_IMAGE_PIXELS = 4096 * 4096  # larger uploads are refused before they are decoded


class BasicAuth:
    """A dependency that admits only the API's users (--api-auth, else the UI's: see auth.Access),
    through the login throttle; a UI session counts too when there is no --api-auth."""

    def __init__(self, access: Access):
        self.access = access

    def __call__(self, request: Request) -> None:
        if not self.access.login_required:
            return
        try:
            user = self.access.api_user(request)
        except Throttled as error:
            raise HTTPException(429, str(error), headers={"Retry-After": str(error.retry_after)}) from None
        if user is None:
            raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})
        request.state.user = user


def caller(request: Request) -> str:
    user = getattr(request.state, "user", None)  # set by BasicAuth or by the guard (auth.install_guard)
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
