"""ImageFolder data for proxy training: decode once into a memory-mapped uint8 store, augment in batches.

JPEG decoding, not the network, is what a 2-core machine cannot afford per trial. So each split of a
dataset (``train/<class>/*``, ``val/<class>/*``: Imagenette, ImageNet, an ImageNet-100 class list) is
decoded once per (dataset, subset, resolution) into ``images.u8`` -- raw ``[N, r, r, 3]`` uint8, read back
with ``np.memmap`` -- plus ``labels.npy`` and a JSON manifest, and every later trial and run maps it.
Each image is resized on its shorter side to ``r`` and centre-cropped to ``r x r`` (Imagenette's squares are
simply resized). The store is keyed on the sorted file list with sizes and mtimes, so editing, adding or
removing a source file rebuilds it; builds go to a temporary folder that is renamed into place, so an
interrupted build never leaves a store that could be read.

Augmentation runs on uint8 batches already on the training device: random-resized-crop and horizontal flip
as one batched ``F.affine_grid`` + ``F.grid_sample`` call. Both splits are normalised with the ImageNet
mean and std (``MEAN``, ``STD``); validation images are used as stored, without augmentation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..model.config import ConfigError
from .decoding import decoded

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DATA_ENV = "ARCHSEARCH_DATA"
CACHE_ENV = "ARCHSEARCH_CACHE"
DEFAULT_DATASET = Path("shared") / "datasets" / "imagenette2-224"
STORE_VERSION = 1  # bump when the stored pixels would differ for the same sources


class DataError(ConfigError):
    """Missing, empty or unreadable data; the message names the path, split or class."""


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class Split:
    """One decoded split: ``images`` is a read-only memory map of ``[N, r, r, 3]`` uint8, RGB."""

    name: str
    images: np.ndarray
    labels: np.ndarray  # [N] int64, indices into the dataset's classes
    skipped: tuple[str, ...]  # files (relative to the dataset root) that could not be decoded
    store: Path  # the cache folder it was read from
    built: bool  # True when this call decoded it, False when an existing store was reused

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Both splits of an ImageFolder dataset at one resolution, with one class list."""

    root: Path
    classes: tuple[str, ...]
    resolution: int
    train: Split
    val: Split

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---- where the data and the cache live -------------------------------------------------------------
def default_data_candidates() -> tuple[Path, ...]:
    """Imagenette in ``shared/datasets`` under or beside the current directory, and beside the source checkout
    when the package runs from one (an installed package's folder says nothing about where data lives)."""
    candidates = [Path.cwd() / ".." / DEFAULT_DATASET, Path.cwd() / DEFAULT_DATASET]
    repo = Path(__file__).resolve().parents[2]  # archsearch/train/data.py -> the checkout, if any
    if (repo / "pyproject.toml").is_file():
        candidates.append(repo / ".." / DEFAULT_DATASET)
    return tuple(dict.fromkeys(p.resolve() for p in candidates))


def resolve_data_root(data: str | Path | None = None) -> Path:
    """``data``, else ``$ARCHSEARCH_DATA``, else the first default location that exists."""
    hint = f"pass --data PATH or set {DATA_ENV} to an ImageFolder root (train/<class>/*, val/<class>/*)"
    for given, origin in ((data, "data"), (os.environ.get(DATA_ENV) or None, DATA_ENV)):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise DataError(f"{origin}: {path} is not a directory; {hint}")
            return path.resolve()
    for path in default_data_candidates():
        if path.is_dir():
            return path
    raise DataError(f"no dataset found (looked for {DEFAULT_DATASET} in and beside the current directory and "
                    f"beside the project); {hint}")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$ARCHSEARCH_CACHE``, else ``~/.cache/archsearch``."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "archsearch"
    return Path(chosen).expanduser()


def read_class_list(path: str | Path) -> tuple[str, ...]:
    """Class folder names, one a line (``#`` comments and blank lines ignored), e.g. an ImageNet-100 list."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DataError(f"classes: cannot read {path}: {err.strerror}") from None
    names = tuple(line.split("#", 1)[0].strip() for line in lines)
    names = tuple(n for n in names if n)
    if not names:
        raise DataError(f"classes: {path} lists no class")
    if len(set(names)) != len(names):
        raise DataError(f"classes: {path} lists a class twice")
    return names


# ---- scanning and the store key --------------------------------------------------------------------
def _image_entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        found = [
            e for e in entries
            if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found, key=lambda e: e.name)


def _discover_classes(root: Path) -> tuple[str, ...]:
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root}: no train split; expected ImageFolder layout train/<class>/*, val/<class>/*")
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"train split is empty: {train} has no class folders")
    return classes


def class_names(root: Path, classes: str | Path | Sequence[str] | None = None) -> tuple[str, ...]:
    """The classes a dataset is loaded with: a class list file or names, else every folder of ``train``."""
    if classes is None:
        return _discover_classes(root)
    if isinstance(classes, (str, Path)):
        return read_class_list(classes)
    return tuple(classes)


def image_counts(data: str | Path | None = None, classes: str | Path | Sequence[str] | None = None
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Images per class of the train and val splits (before any per-class cap), as ``load_dataset`` finds
    them: what a profile's caps apply to, for the planner's and the memory estimate's counts."""
    root = resolve_data_root(data)
    names = class_names(root, classes)
    return tuple(tuple(len(_image_entries(root / split / name)) if (root / split / name).is_dir() else 0
                       for name in names) for split in ("train", "val"))


def _scan(root: Path, split: str, classes: Sequence[str], per_class: int | None) -> list[tuple[str, int, int, int]]:
    """``(relative path, label, size, mtime_ns)`` of the images a split contributes, capped per class."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{split} split is missing: {folder} is not a directory")
    files = []
    for label, name in enumerate(classes):
        entries = _image_entries(folder / name) if (folder / name).is_dir() else []
        if not entries:
            raise DataError(f"class {name!r} is empty in the {split} split: no images in {folder / name}")
        for entry in entries[:per_class]:
            stat = entry.stat()
            files.append((f"{split}/{name}/{entry.name}", label, stat.st_size, stat.st_mtime_ns))
    return files


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def _build(root: Path, split: str, files: list[tuple[str, int, int, int]], classes: Sequence[str], resolution: int,
           target: Path, manifest: dict, workers: int, progress: bool) -> None:
    """Decode ``files`` into a temporary folder beside ``target`` and rename it into place."""
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        row = resolution * resolution * 3
        images = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(len(files), resolution, resolution, 3))
        labels, skipped = [], []
        tasks = [(str(root / rel), resolution) for rel, *_ in files]
        bar = tqdm(decoded(tasks, workers), total=len(tasks), desc=f"decoding {split} @ {resolution}px",
                   unit="img", disable=not progress, leave=False)
        # strict: zip runs the decoder to its end (and the pool to its close/join); a plain zip stops at the
        # last file and leaves it suspended, to be terminated later by the garbage collector
        for (rel, label, *_), (pixels, error) in zip(files, bar, strict=True):
            if pixels is None:
                skipped.append({"path": rel, "error": error})
                continue
            images[len(labels)] = pixels
            labels.append(label)
        images.flush()
        del images
        os.truncate(tmp / "images.u8", len(labels) * row)  # skipped files leave no gap: trim the unused tail
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
        for name, count in zip(classes, counts):
            if count == 0:
                raise DataError(f"class {name!r} is empty in the {split} split: none of its images could be read")
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        manifest = {**manifest, "count": len(labels), "skipped": skipped}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same store first: theirs is as good as ours
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open(store: Path, resolution: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The store's arrays and manifest, or None when it is absent or incomplete."""
    try:
        manifest = json.loads((store / "manifest.json").read_text())
        count = manifest["count"]
        if (store / "images.u8").stat().st_size != count * resolution * resolution * 3:
            return None
        labels = np.load(store / "labels.npy")
    except (OSError, ValueError, KeyError):
        return None
    if len(labels) != count:
        return None
    if count == 0:  # np.memmap cannot map an empty file
        return np.zeros((0, resolution, resolution, 3), np.uint8), labels, manifest
    images = np.memmap(store / "images.u8", dtype=np.uint8, mode="r", shape=(count, resolution, resolution, 3))
    return images, labels, manifest


def load_split(root: Path, split: str, classes: Sequence[str], resolution: int, per_class: int | None = None,
               cache_dir: str | Path | None = None, workers: int = 2, progress: bool = True) -> Split:
    """One split from its store, decoding it first when no store matches the current source files."""
    if resolution < 1:
        raise DataError(f"resolution: {resolution!r} is not a positive number of pixels")
    if per_class is not None and per_class < 1:
        raise DataError(f"per-class cap: {per_class!r} is not a positive integer")
    files = _scan(root, split, classes, per_class)
    identity = _digest([STORE_VERSION, str(root), split, resolution, list(classes), per_class])
    source = _digest([identity, files])
    prefix = f"{root.name}-{split}-r{resolution}-{identity[:8]}-"
    store = cache_root(cache_dir) / f"{prefix}{source[:16]}"
    opened = _open(store, resolution)
    built = opened is None
    if built:
        shutil.rmtree(store, ignore_errors=True)  # an incomplete store of the same key, if any
        manifest = {"version": STORE_VERSION, "root": str(root), "split": split, "resolution": resolution,
                    "classes": list(classes), "per_class": per_class, "source": source, "files": len(files)}
        _build(root, split, files, classes, resolution, store, manifest, workers, progress)
        for stale in store.parent.glob(f"{prefix}*"):  # stores of older versions of the same files
            if stale != store:
                shutil.rmtree(stale, ignore_errors=True)
        opened = _open(store, resolution)
        if opened is None:
            raise DataError(f"cache: the store just built at {store} cannot be read back")
    images, labels, manifest = opened
    skipped = tuple(s["path"] for s in manifest["skipped"])
    return Split(split, images, labels, skipped, store, built)


def fingerprint(data: str | Path | None = None, cache_dir: str | Path | None = None) -> str:
    """A short id of a dataset's content, to key results by data: every image's path (relative to the root)
    and the SHA-256 of its bytes, both splits.

    Content, not sizes or mtimes: an edit that keeps a file's size changes the id, and a copy of the same
    dataset on another machine keeps it (and its cached results). Hashes are remembered per (path, size,
    mtime) in ``<cache>/content-hashes.json``, so only new or changed files are read again.
    """
    root = resolve_data_root(data)
    classes = _discover_classes(root)
    memo_path = cache_root(cache_dir) / "content-hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    files, fresh = [], {}
    for split in ("train", "val"):
        for rel, _label, size, mtime in _scan(root, split, classes, None):
            path = str(root / rel)
            key = f"{path}|{size}|{mtime}"
            digest = memo.get(key) or hashlib.sha256((root / rel).read_bytes()).hexdigest()
            fresh[key] = digest
            files.append((rel, digest))
    if fresh != memo:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({**memo, **fresh}))
        tmp.replace(memo_path)
    return _digest(files)[:16]


def load_dataset(data: str | Path | None = None, resolution: int = 224, *,
                 classes: str | Path | Sequence[str] | None = None, train_per_class: int | None = None,
                 val_per_class: int | None = None, cache_dir: str | Path | None = None, workers: int = 2,
                 progress: bool = True) -> Dataset:
    """An ImageFolder dataset at ``resolution``, decoded once into the cache and memory-mapped afterwards.

    ``data``: the root (else ``$ARCHSEARCH_DATA``, else Imagenette beside the project). ``classes``: a class
    list file or names (default: every folder of ``train``). ``*_per_class``: keep at most that many images
    of each class (the first in file-name order). Unreadable images are skipped and listed in ``skipped``.
    """
    root = resolve_data_root(data)
    names = class_names(root, classes)
    splits = [load_split(root, split, names, resolution, cap, cache_dir, workers, progress)
              for split, cap in (("train", train_per_class), ("val", val_per_class))]
    return Dataset(root, names, resolution, *splits)


# ---- batches and augmentation ----------------------------------------------------------------------
def iterate_batches(split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images [B, 3, r, r] uint8 in channels_last layout, labels [B])`` on the CPU, one pass over ``split``.

    ``drop_last`` drops a final partial batch, unless it would be the only one.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n // batch_size * batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        index = np.sort(order[start:start + batch_size].numpy())  # sorted: sequential reads of the memory map
        images = torch.from_numpy(np.ascontiguousarray(split.images[index])).permute(0, 3, 1, 2)
        yield images, torch.from_numpy(split.labels[index])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32, scaled to 0..1 and standardised with ImageNet ``MEAN`` and ``STD``."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def random_resized_crop(images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> torch.Tensor:
    """Normalised random-resized crops (area fraction in ``scale``, aspect in ``ratio``) with random flips.

    One batched bilinear resampling of the uint8 ``images`` (on any device) at their own size; the random
    boxes are drawn on the CPU from ``generator`` so that a seed fixes them on every device.
    """
    b, _, h, w = images.shape
    area = torch.empty(b).uniform_(*scale, generator=generator)
    aspect = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator).exp()
    crop_w = (area * aspect).sqrt().clamp(max=1.0)  # fraction of the image side
    crop_h = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(b, generator=generator) * 2 - 1) * (1 - crop_w)  # in [-1, 1], crop stays inside
    centre_y = (torch.rand(b, generator=generator) * 2 - 1) * (1 - crop_h)
    mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, centre_y
    grid = F.affine_grid(theta.to(images.device), [b, 3, h, w], align_corners=False)
    crops = F.grid_sample(normalize(images), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crops.contiguous(memory_format=torch.channels_last)

