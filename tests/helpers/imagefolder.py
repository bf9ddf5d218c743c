"""A tiny synthetic ImageFolder dataset for the data and training tests (written with PIL, no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("apple", "berry", "cherry")
COLOURS = {"apple": (200, 40, 40), "berry": (40, 40, 200), "cherry": (40, 200, 40)}
UNREADABLE = ("train/cherry/garbage.jpg", "train/cherry/truncated.jpg")
GRAYSCALE = "train/berry/gray.jpg"


def write_image(path: Path, colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (48, 40)) -> None:
    """A noisy image of one colour (non-square, so the loader's centre crop is exercised)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def make_image_folder(root: Path, train_per_class: int = 6, val_per_class: int = 3) -> Path:
    """``root/{train,val}/<class>/*.jpg`` for ``CLASSES``, plus a grayscale, a garbage and a truncated JPEG."""
    seed = 0
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in CLASSES:
            for i in range(count):
                seed += 1
                write_image(root / split / name / f"{name}_{i:03d}.jpg", COLOURS[name], seed)
    Image.new("L", (40, 40), 128).save(root / GRAYSCALE)
    (root / UNREADABLE[0]).write_bytes(b"this is not a JPEG at all")
    whole = (root / "train/cherry/cherry_000.jpg").read_bytes()
    (root / UNREADABLE[1]).write_bytes(whole[: len(whole) // 2])
    (root / "train/apple/notes.txt").write_text("not an image, not counted")
    return root
