"""Training recipes: the named fidelity ``Profile``s a score is trained at, and the side a config trains at.

Importable without torch, so that light commands (ladders, names, tables, replays) read a profile's numbers
without loading the training loop.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ..model.config import ArchConfig, ConfigError


@dataclass(frozen=True)
class Profile:
    """A named training recipe: how much data, how long, at what resolution and with what optimiser."""

    name: str
    epochs: int
    train_per_class: int | None  # cap on training images per class (None: all)
    val_per_class: int | None  # cap on validation images per class (None: all)
    resolution_scale: float  # train and evaluate at round(config.resolution * this) px (>= 32)
    batch_size: int
    lr: float  # peak AdamW learning rate
    weight_decay: float  # on conv and linear weights only
    warmup_fraction: float = 0.1  # of all steps, linear from 0 to the peak
    min_lr_ratio: float = 0.1  # the cosine ends at lr * this
    label_smoothing: float = 0.1
    grad_clip: float = 10.0  # max global gradient norm
    crop_scale: tuple[float, float] = (0.25, 1.0)  # random-resized-crop area fraction
    compile: bool = False  # torch.compile the model (CUDA only: compiling costs more than it saves on a CPU)
    optimizer: str = "adamw"
    stop_epoch: int | None = None  # stop after this epoch of the schedule (a rung that a later rung continues)

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "resolution_scale": self.resolution_scale}
        for field, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{field}: {value!r} is not positive")
        if self.optimizer != "adamw":
            raise ConfigError(f"optimizer: only 'adamw' is implemented, got {self.optimizer!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction: {self.warmup_fraction!r} is not in [0, 1)")
        if self.stop_epoch is not None and not 1 <= self.stop_epoch <= self.epochs:
            raise ConfigError(f"stop_epoch: {self.stop_epoch!r} is not an epoch of the {self.epochs} of {self.name!r}")

    @property
    def last_epoch(self) -> int:
        """The epoch this profile's run ends at."""
        return self.stop_epoch or self.epochs

    def schedule(self) -> dict[str, Any]:
        """What fixes the training trajectory epoch by epoch: every field but the name and where it stops.
        Two profiles with one schedule train the same network up to the earlier one's last epoch, so the
        later continues from the earlier's checkpoint (``fidelity.Ladder.continues``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("name", "stop_epoch")}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # Tests only: checks that the pipeline runs end to end; its accuracy means nothing.
    "tiny": Profile("tiny", epochs=1, train_per_class=8, val_per_class=4, resolution_scale=0.25, batch_size=16,
                    lr=1e-3, weight_decay=0.01, warmup_fraction=0.0),
    # Tests only: a second rung above tiny, so that rung ladders run end to end in seconds.
    "tiny-top": Profile("tiny-top", epochs=2, train_per_class=8, val_per_class=4, resolution_scale=0.25,
                        batch_size=16, lr=1e-3, weight_decay=0.01, warmup_fraction=0.0),
    # A 2-core CPU: 6,000 training images at half resolution, about a minute for v2-0.5 (~100 img/s at 128 px).
    # Mild crops and a lower peak LR: measured best of the variants tried for so short a run (benchmarks/RESULTS.md).
    "smoke": Profile("smoke", epochs=4, train_per_class=150, val_per_class=100, resolution_scale=0.5,
                     batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # The first rung of the CPU ladder: the smoke recipe on 2,400 images seen (0.4x smoke), about 25 s for a
    # 300M-MAC v2 on a 2-core CPU, so that a 15-minute search can screen 14 networks and decide at smoke.
    "quick": Profile("quick", epochs=3, train_per_class=80, val_per_class=50, resolution_scale=0.5,
                     batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # The GPU ladder's cheaper rungs (fidelity.DEFAULT_LADDERS["gpu"]); not yet measured on a GPU.
    "proxy-r0": Profile("proxy-r0", epochs=5, train_per_class=300, val_per_class=100, resolution_scale=1.0,
                        batch_size=128, lr=3e-3, weight_decay=0.02, crop_scale=(0.35, 1.0)),
    "proxy-r1": Profile("proxy-r1", epochs=8, train_per_class=None, val_per_class=None, resolution_scale=1.0,
                        batch_size=128, lr=3e-3, weight_decay=0.02, crop_scale=(0.35, 1.0)),
    # The default on a GPU: all of Imagenette at full resolution, long enough to separate architectures.
    "proxy": Profile("proxy", epochs=15, train_per_class=None, val_per_class=None, resolution_scale=1.0,
                     batch_size=128, lr=3e-3, weight_decay=0.02, crop_scale=(0.35, 1.0)),
    # The top rung of the CPU ladder: the smoke recipe, longer and on more images (10,000 images seen, 1.7x
    # smoke), scored on 200 val images a class so that paired margins are tighter.
    "short": Profile("short", epochs=5, train_per_class=200, val_per_class=200, resolution_scale=0.5,
                     batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # The CPU's reference fidelity for fidelity studies (benchmarks/RESULTS.md): the smoke recipe on every
    # training image (4.7x the distinct images of `short`, 3.8x the images seen), scored on every val image.
    "reference": Profile("reference", epochs=4, train_per_class=None, val_per_class=None, resolution_scale=0.5,
                         batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # The CPU ladder's deciding rung: the reference recipe in 2 epochs (every training image at half side, every
    # val image): half the reference's compute, so that 2 finalists and 3 baselines fit a 45-minute run.
    "decide": Profile("decide", epochs=2, train_per_class=None, val_per_class=None, resolution_scale=0.5,
                      batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # The truth a deciding rung is calibrated against (benchmarks/calibrate.py): the decide recipe at full side,
    # 4x its compute; beside `decide` it differs in resolution alone, so the pair also measures what half side hides.
    "decide-full": Profile("decide-full", epochs=2, train_per_class=None, val_per_class=None, resolution_scale=1.0,
                           batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # A candidate deciding rung at full side for twice `decide`'s compute: the decide recipe in one epoch. Measured
    # against decide-full (benchmarks/deciding_profile.py): seed noise 2.9 points, so no better a verdict per
    # CPU-second than `decide`; not the default.
    "decide-full-1ep": Profile("decide-full-1ep", epochs=1, train_per_class=None, val_per_class=None,
                               resolution_scale=1.0, batch_size=32, lr=2e-3, weight_decay=0.01, crop_scale=(0.5, 1.0)),
    # Long training of a chosen architecture (the ml-cvnets recipe, shortened for a 10- to 100-class subset).
    "full": Profile("full", epochs=100, train_per_class=None, val_per_class=None, resolution_scale=1.0,
                    batch_size=256, lr=4e-3, weight_decay=0.02, warmup_fraction=0.05, compile=True),
}


_STOPPED = re.compile(r"^(?P<base>.+)-e(?P<epoch>[0-9]+)$")


def _parse_name(name: str) -> tuple[Profile, int | None] | None:
    """The profile of ``PROFILES`` that ``name`` stands for and the epoch it stops after (``smoke-e1``: smoke's
    schedule stopped after its first epoch; None for the whole schedule); None when it names neither."""
    if name in PROFILES:
        return PROFILES[name], None
    match = _STOPPED.match(name)
    if match is None or match["base"] not in PROFILES:
        return None
    return PROFILES[match["base"]], int(match["epoch"])


def is_profile_name(name: str) -> bool:
    """True when ``name`` is a profile of ``PROFILES`` or one of them stopped early (``NAME-eK``)."""
    return _parse_name(name) is not None


def get_profile(profile: str | Profile, **overrides: Any) -> Profile:
    """A profile by name (or as given; ``NAME-eK`` stops ``NAME`` after epoch K) with fields replaced by
    ``overrides``."""
    if isinstance(profile, str):
        parsed = _parse_name(profile)
        if parsed is None:
            raise ConfigError(f"profile: unknown {profile!r}; choose from {', '.join(PROFILES)} "
                              "(NAME-eK: NAME stopped after epoch K)")
        base, stop_epoch = parsed
        profile = base if stop_epoch is None else dataclasses.replace(base, name=profile, stop_epoch=stop_epoch)
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Profile)})
    if unknown:
        raise ConfigError(f"profile: unknown field(s) {', '.join(unknown)}")
    return dataclasses.replace(profile, **overrides)


MIN_TRAIN_RESOLUTION = 32


def train_resolution(config: ArchConfig, scale: float) -> int:
    """The side a config trains and is scored at: ``config.resolution * scale`` to the nearest pixel, at least
    ``MIN_TRAIN_RESOLUTION``. The finest rounding there is: the generated models run at every side (tested
    for both families), so distinct config resolutions stay distinct networks at every profile."""
    return max(MIN_TRAIN_RESOLUTION, round(config.resolution * scale))


def check_distinct_resolutions(resolutions: list[int] | tuple[int, ...], profile: Profile) -> None:
    """Refuse a profile under which two of ``resolutions`` would train at the same side."""
    sides: dict[int, int] = {}
    for r in sorted(set(resolutions)):
        side = max(MIN_TRAIN_RESOLUTION, round(r * profile.resolution_scale))
        if side in sides:
            raise ConfigError(f"profile {profile.name!r}: resolutions {sides[side]} and {r} would both train at "
                              f"{side} px (resolution_scale {profile.resolution_scale:g}); use a larger scale")
        sides[side] = r
