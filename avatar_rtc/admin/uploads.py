"""Streamed multipart/form-data reading with the size cap enforced as bytes arrive."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from avatar_rtc.http_errors import ApiError

CHUNK_BYTES = 64 * 1024


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    audio: bytes | None = None
    filename: str | None = None


def too_large(max_bytes: int) -> ApiError:
    # The rest of the body is never read: close the connection after answering.
    return ApiError(413, f"upload is larger than admin.max_upload_bytes ({max_bytes} bytes)",
                    close=True)


async def _read_part(part: BodyPartReader, request: web.Request, max_bytes: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK_BYTES):
        data.extend(chunk)
        # Everything received so far counts: part headers and boundaries too, and it
        # holds for a chunked body that declared no length.
        if request.content.total_bytes > max_bytes:
            raise too_large(max_bytes)
    return bytes(data)


async def read_form(request: web.Request, max_bytes: int, file_field: str,
                    text_fields: frozenset[str]) -> UploadForm:
    """Text fields by name (others are read and dropped) and one file field."""
    if request.content_type != "multipart/form-data":
        raise ApiError(400, f"body must be multipart/form-data, got {request.content_type}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    form = UploadForm()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested multipart bodies are not supported")
            name = part.name
            data = await _read_part(part, request, max_bytes)
            if name == file_field:
                if form.audio is not None:
                    raise ApiError(400, f"more than one {file_field!r} field")
                form.audio, form.filename = data, part.filename
            elif name in text_fields:
                try:
                    form.fields[name] = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ApiError(400, f"field {name!r} is not valid UTF-8") from None
    except (ClientPayloadError, ConnectionError):
        raise ApiError(400, "the upload was interrupted") from None
    except (ValueError, RuntimeError, HttpProcessingError) as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    return form
