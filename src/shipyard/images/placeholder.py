"""BlurHash placeholders (blurha.sh), computed once on upload: a ~30-character string that
apps decode into a blurred preview while the image loads (decoders exist for JS, Swift,
Kotlin, Flutter…). Encoded by the `blurhash` package (pure Python) on a 32-pixel sample, a
few milliseconds per image."""

from __future__ import annotations

import blurhash
from PIL import Image

SAMPLE_SIDE = 32  # the hash only holds a few cosine components: a small sample is enough


def placeholder_of(im: Image.Image) -> str:
    """The BlurHash of an already decoded image (transparent pixels over white)."""
    sample = im.copy()
    sample.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.BILINEAR)
    if sample.mode != "RGB":
        rgba = sample.convert("RGBA")
        sample = Image.new("RGB", rgba.size, (255, 255, 255))
        sample.paste(rgba, mask=rgba.getchannel("A"))
    x, y = (4, 3) if sample.width >= sample.height else (3, 4)
    w = sample.width
    flat = list(sample.tobytes())
    rows = [
        [flat[(r * w + c) * 3 : (r * w + c) * 3 + 3] for c in range(w)]
        for r in range(sample.height)
    ]
    return str(blurhash.encode(rows, components_x=x, components_y=y))
