"""The data pipeline: decoded-store cache (build once, reuse, invalidate, atomic), bad images, errors, augmentation."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.imagefolder import (
    CLASSES,
    COLOURS,
    UNREADABLE,
    make_image_folder,
    write_image,
)

from archsearch.train import data, decoding
from archsearch.train.data import (
    DataError,
    fingerprint,
    iterate_batches,
    load_dataset,
    normalize,
    random_resized_crop,
    resolve_data_root,
)
from archsearch.train.decoding import decoding_pool


@pytest.fixture
def folder(tmp_path):
    return make_image_folder(tmp_path / "fruit")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def stores(cache, split="train"):
    return sorted(p.name for p in cache.iterdir() if f"-{split}-" in p.name) if cache.exists() else []


def test_store_is_built_once_then_reused(folder, cache):
    first = load_dataset(folder, 32, cache_dir=cache, progress=False)
    assert first.classes == CLASSES and first.num_classes == 3
    assert first.train.built and first.val.built
    assert first.train.images.shape == (3 * 6 + 1, 32, 32, 3)  # + grayscale; garbage and truncated skipped
    assert first.val.images.shape == (9, 32, 32, 3)
    assert sorted(first.train.skipped) == sorted(UNREADABLE) and first.val.skipped == ()
    assert np.bincount(first.train.labels).tolist() == [6, 7, 6]

    again = load_dataset(folder, 32, cache_dir=cache, progress=False)
    assert not again.train.built and not again.val.built
    assert isinstance(again.train.images, np.memmap)
    np.testing.assert_array_equal(again.train.images, first.train.images)
    np.testing.assert_array_equal(again.train.labels, first.train.labels)
    assert again.train.skipped == first.train.skipped

    other = load_dataset(folder, 64, cache_dir=cache, progress=False)  # another resolution: its own store
    assert other.train.built and other.train.images.shape[1:] == (64, 64, 3)


def test_pixels_are_rgb_at_the_class_colour(folder, cache):
    ds = load_dataset(folder, 32, cache_dir=cache, progress=False)
    for label, name in enumerate(CLASSES):
        means = ds.val.images[ds.val.labels == label].reshape(-1, 3).mean(axis=0)
        assert np.abs(means - COLOURS[name]).max() < 12
    gray_index = sorted(p.name for p in (folder / "train/berry").iterdir()).index("gray.jpg")
    gray = ds.train.images[np.flatnonzero(ds.train.labels == 1)[gray_index]]
    assert (gray == 128).all()  # a grayscale file comes out with three equal channels


def test_store_is_rebuilt_when_a_source_file_changes(folder, cache):
    before = load_dataset(folder, 32, cache_dir=cache, progress=False)
    old_pixels = np.array(before.val.images[0])
    old_store = before.val.store
    write_image(folder / "val/apple/apple_000.jpg", (255, 255, 0), seed=99)  # same name, new content
    os.utime(folder / "val/apple/apple_000.jpg", ns=(1, 1))  # and a different mtime whatever the file system
    after = load_dataset(folder, 32, cache_dir=cache, progress=False)
    assert after.val.built and not after.train.built
    assert after.val.store != old_store and not old_store.exists()  # the stale store is gone
    assert np.abs(after.val.images[0].astype(int) - old_pixels).mean() > 50

    write_image(folder / "val/apple/apple_new.jpg", (200, 40, 40), seed=100)  # a new file
    grown = load_dataset(folder, 32, cache_dir=cache, progress=False)
    assert grown.val.built and len(grown.val) == 10
    assert stores(cache, "val") == [grown.val.store.name]


def test_an_interrupted_build_leaves_nothing_behind(folder, cache, monkeypatch):
    decode = decoding.decode
    calls = []

    def failing(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return decode(task)

    monkeypatch.setattr(decoding, "decode", failing)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(folder, 32, cache_dir=cache, progress=False, workers=1)
    assert list(cache.iterdir()) == []  # neither a store nor a temporary folder
    monkeypatch.setattr(decoding, "decode", decode)
    assert load_dataset(folder, 32, cache_dir=cache, progress=False).train.built


def test_a_truncated_store_is_rebuilt(folder, cache):
    first = load_dataset(folder, 32, cache_dir=cache, progress=False)
    os.truncate(first.train.store / "images.u8", 100)
    assert load_dataset(folder, 32, cache_dir=cache, progress=False).train.built


def test_multiprocess_decoding_matches_inline(tmp_path):
    root = make_image_folder(tmp_path / "big", train_per_class=24)  # over the pool threshold
    pooled = load_dataset(root, 32, cache_dir=tmp_path / "a", progress=False, workers=2)
    inline = load_dataset(root, 32, cache_dir=tmp_path / "b", progress=False, workers=1)
    np.testing.assert_array_equal(pooled.train.images, inline.train.images)
    np.testing.assert_array_equal(pooled.train.labels, inline.train.labels)
    assert pooled.train.skipped == inline.train.skipped


POOL_ROUNDS = """
import signal, sys
from pathlib import Path
from archsearch.cli.common import sigterm_as_interrupt
from archsearch.train.data import load_dataset
from archsearch.train.decoding import decoding_pool

def dispositions(_):
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, signal.getsignal(signal.SIGINT) == signal.SIG_IGN

root, rounds, expected = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with sigterm_as_interrupt():
    with decoding_pool(2) as pool:
        print(*pool.map(dispositions, range(2), chunksize=1))
    for i in range(rounds):  # each round decodes the training split with 2 workers into a fresh cache
        assert len(load_dataset(root, 4, cache_dir=root / "cache" / str(i), progress=False).train) == expected
print("done")
"""


def test_decoding_ends_under_the_cli_sigterm_handler(tmp_path):
    """Decoding under the CLI's SIGTERM handler ended its pool with terminate() (from the garbage collector, as
    the generator was left suspended) and sometimes hung the run."""
    root = make_image_folder(tmp_path / "big", train_per_class=24)  # over the pool threshold
    expected = len(load_dataset(root, 4, cache_dir=tmp_path / "inline", progress=False, workers=1).train)
    result = subprocess.run([sys.executable, "-c", POOL_ROUNDS, str(root), "40", str(expected)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(True,", "True)", "(True,", "True)", "done"]
    assert "Exception ignored" not in result.stderr, result.stderr


FORK_INTERRUPTED = """
import os, signal, sys
from pathlib import Path
from archsearch.cli.common import sigterm_as_interrupt
from archsearch.train.data import load_dataset

root, signum, hook = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sent = []

def send():  # the signal lands while the pool forks its first worker
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), signum)

os.register_at_fork(**{hook: send})
try:
    with sigterm_as_interrupt():
        load_dataset(root, 4, cache_dir=root / "cache", progress=False, workers=2)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
print("finished")
"""


@pytest.mark.parametrize("signum, hook", [(signal.SIGINT, "after_in_parent"), (signal.SIGTERM, "before")],
                         ids=["sigint-after-fork", "sigterm-before-fork"])
def test_a_signal_while_the_pool_forks_stops_the_decode(tmp_path, signum, hook):
    """A signal handled inside os.fork's at-fork hooks (logging registers two) raised KeyboardInterrupt
    there, where CPython reports it as unraisable and drops it: the decode, and the run, carried on."""
    root = make_image_folder(tmp_path / "big", train_per_class=24)  # over the pool threshold
    # a worker left behind would hold the pipes open: the timeout
    result = subprocess.run([sys.executable, "-c", FORK_INTERRUPTED, str(root), str(int(signum)), hook],
                            capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stdout) == (130, "interrupted\n"), result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert not list((root / "cache").glob("*/manifest.json"))  # no store was finished


def test_a_decode_ends_its_pool_with_close_and_join_finished_or_interrupted(tmp_path, monkeypatch):
    """Interrupted, the pool was ended with terminate(), which SIGTERMs the workers: one killed inside its result
    queue's put() leaves that queue's write lock held, and terminate() then waited for ever on the pool's task
    handler (a Ctrl-C in the middle of a decode hung the run)."""
    root = make_image_folder(tmp_path / "big", train_per_class=24)  # over the pool threshold
    pools, terminated = [], []

    def spied_pool(workers, stop=None):
        pool = decoding_pool(workers, stop)
        kill = pool.terminate
        pool.terminate = lambda: (terminated.append(pool), kill())
        pools.append(pool)
        return pool

    monkeypatch.setattr(decoding, "decoding_pool", spied_pool)
    load_dataset(root, 16, cache_dir=tmp_path / "a", progress=False, workers=2)
    assert pools and not terminated  # the decoder ran to its end: close/join, the workers exited by themselves
    assert all(worker.exitcode == 0 for pool in pools for worker in pool._pool)

    pools.clear()
    monkeypatch.setattr(data.np, "memmap", lambda *args, **kwargs: _Interrupting())
    with pytest.raises(KeyboardInterrupt):
        try:
            load_dataset(root, 16, cache_dir=tmp_path / "b", progress=False, workers=2)
        finally:  # the interrupt is still in flight: the workers have exited already, by themselves
            exitcodes = [worker.exitcode for pool in pools for worker in pool._pool]
    assert len(pools) == 1 and not terminated and exitcodes == [0, 0]


def test_stopped_workers_skip_their_tasks(folder):
    stop = multiprocessing.RawValue(ctypes.c_bool, False)
    pool = decoding_pool(2, stop)
    tasks = [(str(folder / "train/apple/apple_000.jpg"), 8)] * 4
    first = pool.map(decoding._decode_unless_stopped, tasks)
    stop.value = True
    second = pool.map(decoding._decode_unless_stopped, tasks)
    pool.close()
    pool.join()
    assert [pixels.shape for pixels, _ in first] == [(8, 8, 3)] * 4
    assert second == [(None, "stopped")] * 4


class _Interrupting:
    """A store whose first write is interrupted, as by Ctrl-C in the middle of decoding."""

    def __setitem__(self, index, value):
        raise KeyboardInterrupt


def test_empty_class_or_split_is_an_error_naming_it(folder, cache):
    (folder / "val/berry").rename(folder / "val_berry_moved")
    (folder / "val/berry").mkdir()
    with pytest.raises(DataError, match=r"class 'berry' is empty in the val split"):
        load_dataset(folder, 32, cache_dir=cache, progress=False)
    shutil.rmtree(folder / "val")
    with pytest.raises(DataError, match=r"val split is missing"):
        load_dataset(folder, 32, cache_dir=cache, progress=False)


def test_class_with_only_unreadable_images_is_an_error(tmp_path, cache):
    root = tmp_path / "broken"
    for split in ("train", "val"):
        write_image(root / split / "ok" / "a.jpg", (10, 10, 10), seed=1)
        (root / split / "bad").mkdir(parents=True)
        (root / split / "bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"class 'bad' is empty in the train split: none of its images"):
        load_dataset(root, 32, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_train_split_without_classes_is_an_error(tmp_path, cache):
    (tmp_path / "nothing" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="train split is empty"):
        load_dataset(tmp_path / "nothing", 32, cache_dir=cache)


def test_class_list_and_per_class_caps(folder, cache, tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_text("# two of the three\ncherry\n\napple  # comment\n")
    ds = load_dataset(folder, 32, classes=listing, train_per_class=2, val_per_class=1, cache_dir=cache,
                      progress=False)
    assert ds.classes == ("cherry", "apple")
    assert np.bincount(ds.train.labels).tolist() == [2, 2] and len(ds.val) == 2
    listing.write_text("apple\ndurian\n")
    with pytest.raises(DataError, match="durian"):
        load_dataset(folder, 32, classes=listing, cache_dir=cache, progress=False)


def test_data_root_resolution_order(folder, tmp_path, monkeypatch):
    other = make_image_folder(tmp_path / "other")
    monkeypatch.setenv("ARCHSEARCH_DATA", str(other))
    assert resolve_data_root() == other.resolve()
    assert resolve_data_root(folder) == folder.resolve()  # an explicit path wins
    monkeypatch.setenv("ARCHSEARCH_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="ARCHSEARCH_DATA") as err:
        resolve_data_root()
    assert "\n" not in str(err.value) and "--data" in str(err.value)
    monkeypatch.delenv("ARCHSEARCH_DATA")
    monkeypatch.setattr(data, "default_data_candidates", lambda: (tmp_path / "nowhere",))
    with pytest.raises(DataError, match="pass --data PATH or set ARCHSEARCH_DATA"):
        resolve_data_root()


def test_default_data_is_found_from_the_current_directory(tmp_path, monkeypatch):
    """As for an installed package: ``shared/datasets/imagenette2-224`` under or beside the current directory."""
    dataset = make_image_folder(tmp_path / data.DEFAULT_DATASET)
    monkeypatch.delenv("ARCHSEARCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == dataset.resolve()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_data_root() == dataset.resolve()


def test_fingerprint_follows_content(folder):
    first = fingerprint(folder)
    assert fingerprint(folder) == first
    write_image(folder / "val/apple/extra.jpg", (1, 2, 3), seed=5)
    assert fingerprint(folder) != first


def test_batches_cover_the_split_once_in_a_seeded_order(folder, cache):
    split = load_dataset(folder, 32, cache_dir=cache, progress=False).train  # 19 images

    def labels(seed, drop_last):
        batches = list(iterate_batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(seed),
                                       drop_last=drop_last))
        assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) for x, _ in batches)
        return [batch_labels.tolist() for _, batch_labels in batches]

    full = labels(0, drop_last=False)
    assert [len(b) for b in full] == [4, 4, 4, 4, 3]
    assert sorted(sum(full, [])) == sorted(split.labels.tolist())
    assert labels(0, drop_last=False) == full and labels(1, drop_last=False) != full
    assert [len(b) for b in labels(0, drop_last=True)] == [4, 4, 4, 4]


def test_identity_crop_reproduces_the_image_and_flip_mirrors_it():
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    same = random_resized_crop(images, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    torch.testing.assert_close(same, normalize(images), atol=1e-5, rtol=0)
    flipped = random_resized_crop(images, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    mirrored = [torch.allclose(flipped[i], normalize(images)[i].flip(-1), atol=1e-5) for i in range(6)]
    kept = [torch.allclose(flipped[i], normalize(images)[i], atol=1e-5) for i in range(6)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_augmentation_is_seeded_and_normalised():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = random_resized_crop(images, torch.Generator().manual_seed(3))
    b = random_resized_crop(images, torch.Generator().manual_seed(3))
    c = random_resized_crop(images, torch.Generator().manual_seed(4))
    assert a.dtype == torch.float32 and a.shape == images.shape
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b) and not torch.equal(a, c)
    white = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))[0, :, 0, 0]
    torch.testing.assert_close(white, (1 - torch.tensor(data.MEAN)) / torch.tensor(data.STD))
