"""POST /sdapi/v1/interrogate: A1111's request `{"image": base64, "model": "clip"}` -> `{"caption": text}`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict

from ..interrogate import MODELS, ModelsMissing, ModelUnreadable
from ..interrogate.service import interrogate_image
from ..state import SharedState
from .common import decode_image


class InterrogateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = ""  # base64, optionally a data: URI
    model: str = "clip"  # "clip"; A1111's "deepdanbooru" is not offered here


class InterrogateResponse(BaseModel):
    caption: str


def register_interrogate(api: APIRouter, state: SharedState) -> None:
    @api.post("/interrogate", response_model=InterrogateResponse)
    def interrogate(req: InterrogateRequest):  # sync: FastAPI runs it in a worker thread
        if req.model not in MODELS:  # A1111 answers an unknown model with 404 too
            offered = ", ".join(MODELS)
            raise HTTPException(404, f"Model not found: {req.model!r}; this WebUI interrogates with: {offered}"
                                     + (" (DeepBooru is not available)" if req.model == "deepdanbooru" else ""))
        image = decode_image(req.image, "image")
        try:
            return {"caption": interrogate_image(state, image)}
        except ModelsMissing as error:
            raise HTTPException(404, str(error)) from None
        except ModelUnreadable as error:  # the server's files, not the request, are at fault
            raise HTTPException(500, str(error)) from None
