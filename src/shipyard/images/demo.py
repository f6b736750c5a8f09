"""Pleasant images made at load time for the demo data set (no downloads): soft gradients
with a few translucent shapes, deterministic for a given index."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

PALETTES = [
    ((255, 154, 139), (255, 106, 136), (255, 153, 172)),
    ((33, 147, 176), (109, 213, 237), (255, 255, 255)),
    ((67, 206, 162), (24, 90, 157), (240, 240, 200)),
    ((255, 200, 55), (255, 128, 8), (255, 240, 220)),
    ((142, 45, 226), (74, 0, 224), (230, 210, 255)),
    ((17, 153, 142), (56, 239, 125), (250, 255, 240)),
]


def demo_image(index: int, width: int = 1200, height: int = 800) -> Image.Image:
    """One picture: a diagonal gradient, soft circles and a horizon band."""
    rng = random.Random(index)  # noqa: S311  (a fixed picture per index, not a secret)
    top, bottom, accent = PALETTES[index % len(PALETTES)]
    ramp = Image.linear_gradient("L").resize((width, height))
    im = Image.composite(Image.new("RGB", (width, height), bottom),
                         Image.new("RGB", (width, height), top), ramp)  # fmt: skip
    shapes = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    for _ in range(6):
        r = rng.randint(height // 10, height // 3)
        x, y = rng.randint(0, width), rng.randint(0, height)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*accent, rng.randint(40, 110)))
    band = int(height * rng.uniform(0.6, 0.8))
    draw.rectangle((0, band, width, height), fill=(*top, 90))
    shapes = shapes.filter(ImageFilter.GaussianBlur(radius=width / 80))
    return Image.alpha_composite(im.convert("RGBA"), shapes).convert("RGB")


def demo_images(n: int) -> list[tuple[str, bytes]]:
    """`n` JPEG pictures named demo-1.jpg…, for the demo's records to hold."""
    out = []
    for i in range(n):
        buf = io.BytesIO()
        demo_image(i).save(buf, "JPEG", quality=85, optimize=True)
        out.append((f"demo-{i + 1}.jpg", buf.getvalue()))
    return out
