"""The example of docs/images.md runs and does what its comments say."""

from __future__ import annotations

import io

from PIL import Image

from tests.helpers.docblocks import block


def test_the_images_api_example_runs() -> None:
    namespace: dict[str, object] = {}
    exec(compile(block("images-api").text, "docs/images.md", "exec"), namespace)  # noqa: S102 (the documented example)
    assert namespace["fmt"] == "avif"
    thumb = namespace["thumb"]
    assert isinstance(thumb, bytes)
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "AVIF"
        assert im.size == (640, 427)
    assert namespace["candidates"] == (
        "/api/files/posts/r1/demo-1.jpg?thumb=320x0 320w, "
        "/api/files/posts/r1/demo-1.jpg?thumb=640x0 640w, "
        "/api/files/posts/r1/demo-1.jpg?thumb=960x0 960w, "
        "/api/files/posts/r1/demo-1.jpg 1200w"
    )
    assert isinstance(namespace["blur"], str)
    assert len(namespace["blur"]) == 28
    assert namespace["blur"] == namespace["placeholder"](namespace["data"])
