"""Served images back to the browser: typed by their bytes, never by what a caller claimed.

A served input is whatever a client sent, so its bytes decide its type: JPEG, PNG and WebP by
their signatures (the formats ModelInfer decodes), shown inline; anything else is sent as an
opaque download. With ``nosniff`` (see ``_guard``) a browser never renders them as HTML.
"""

from __future__ import annotations

from starlette.responses import Response

SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff(data: bytes) -> str | None:
    """The image type of ``data`` from its leading bytes; None when it is none of ours."""
    for magic, media_type in SIGNATURES:
        if data.startswith(magic):
            return media_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_response(data: bytes) -> Response:
    media_type = sniff(data)
    if media_type is None:
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": 'attachment; filename="input.bin"'},
        )
    return Response(
        data,
        media_type=media_type,
        headers={"Content-Disposition": "inline", "Cache-Control": "private, max-age=300"},
    )
