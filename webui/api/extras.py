"""A1111's Extras endpoints: POST /sdapi/v1/extra-single-image and /extra-batch-images, and the lists
GET /realesrgan-models and /face-restorers. A thin layer over webui/postprocessing."""

from __future__ import annotations

import base64
from typing import Literal

import anyio
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..generation.images import encode_image
from ..postprocessing import model_upscalers
from ..postprocessing.extras import ExtrasError, ExtrasParams, run_extras
from ..postprocessing.face_restoration import RESTORERS, FaceRestorationUnavailable
from ..postprocessing.model_files import FACE_FOLDERS
from ..postprocessing.networks import ModelFileError
from ..state import SharedState
from .common import decode_image


class ExtrasRequest(BaseModel):
    """A1111's ExtrasBaseRequest: its fields, defaults and ranges."""

    model_config = ConfigDict(extra="ignore")
    resize_mode: Literal[0, 1] = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    codeformer_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    codeformer_weight: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscaling_resize: float = Field(default=2, gt=0, le=16, allow_inf_nan=False)
    upscaling_resize_w: int = Field(default=512, ge=1, le=16384)
    upscaling_resize_h: int = Field(default=512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasRequest):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str


class ExtrasBatchImagesRequest(ExtrasRequest):
    imageList: list[FileData]  # noqa: N815 (A1111's field name)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


def _process(state: SharedState, req: ExtrasRequest, images: list) -> tuple[list[str], str]:
    """(base64 PNGs, A1111's html_info) for the decoded `images`; 400 naming the field or the missing file."""
    params = ExtrasParams.from_mapping(req.model_dump())
    device = str(getattr(state.models.slot, "device", "cpu"))
    encoded, infos = [], []
    try:
        for image in images:
            result = run_extras(params, image, state.flags.models_dir, device)
            chunks = result.pnginfo(image)  # the source's parameters, and what the Extras did
            png = encode_image(result.image, "png", chunks.pop("parameters", None), existing_pnginfo=chunks)
            encoded.append(base64.b64encode(png).decode("ascii"))
            infos.append(result.infotext)
    except (ExtrasError, FaceRestorationUnavailable, ModelFileError) as error:
        raise HTTPException(400, str(error)) from None
    return encoded, "".join(f"<p>{text}</p>" for text in infos if text)


def register_extras(api: APIRouter, state: SharedState) -> None:
    @api.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(req: ExtrasSingleImageRequest):
        if not req.image:
            raise HTTPException(400, "image: a base64 image is required")
        image = decode_image(req.image, "image")
        encoded, html = await anyio.to_thread.run_sync(_process, state, req, [image])
        return {"html_info": html, "image": encoded[0] if req.show_extras_results else None}

    @api.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(req: ExtrasBatchImagesRequest):
        images = [decode_image(item.data, f"imageList[{i}].data") for i, item in enumerate(req.imageList)]
        encoded, html = await anyio.to_thread.run_sync(_process, state, req, images)
        return {"html_info": html, "images": encoded if req.show_extras_results else []}

    @api.get("/realesrgan-models")
    def realesrgan_models():
        return [{"name": f.name, "path": str(f.path), "scale": f.scale}
                for f in model_upscalers.model_upscaler_files() if f.folder == "RealESRGAN"]

    @api.get("/face-restorers")
    def face_restorers():
        return [{"name": name, "cmd_dir": str(state.flags.models_dir / FACE_FOLDERS[name])} for name in RESTORERS]
