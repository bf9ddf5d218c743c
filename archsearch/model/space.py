"""The factor space: range and step of each global factor, read from a TOML file.

The default spaces ship inside the package (``archsearch/spaces/*.toml``, read through ``importlib.resources``
so that an installed wheel finds them too); ``--space FILE`` reads a user's own.

A space enumerates its grid, samples from it, checks that a config is one of its points, and maps configs
to the unit cube (the coordinates the surrogate models). Factors are always in ``FACTORS`` order.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from itertools import product
from pathlib import Path

import numpy as np

from .config import ArchConfig, ConfigError

FACTORS = ("resolution", "width", "mv2_depth", "vit_depth")
# Package data (declared in pyproject.toml): a Traversable, a plain Path for an ordinary install.
DEFAULT_SPACES: dict[str, Traversable] = {
    family: files("archsearch.model") / "spaces" / f"mobilevit_{family}.toml" for family in ("v1", "v2")
}


def read_space_toml(path: str | Path | Traversable) -> dict:
    """The parsed TOML of a space file (a user's path, or one of ``DEFAULT_SPACES``)."""
    if isinstance(path, str):
        path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"space: no such file {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ConfigError(f"space: cannot read {path} ({err})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"space: {path} is not valid TOML ({err})") from None


@dataclass(frozen=True)
class FactorRange:
    """Values ``min, min+step, ..., max`` of one factor."""

    name: str
    min: float
    max: float
    step: float

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.max >= self.min):
            raise ConfigError(f"{self.name}: need max >= min and step > 0, got {self.min}..{self.max} step {self.step}")
        if self.name == "resolution" and not all(float(v).is_integer() for v in (self.min, self.max, self.step)):
            raise ConfigError("resolution: min, max and step must be integers")

    def values(self) -> tuple[float, ...]:
        n = math.floor((self.max - self.min) / self.step + 1e-9) + 1
        vals = [self.min + i * self.step for i in range(n)]
        if self.name == "resolution":
            return tuple(int(round(v)) for v in vals)
        return tuple(round(v, 6) for v in vals)

    def contains(self, value: float) -> bool:
        return any(abs(value - v) < 1e-6 for v in self.values())

    def describe(self) -> str:
        return f"{self.min:g}..{self.max:g} step {self.step:g}"


@dataclass(frozen=True)
class FactorSpace:
    family: str
    ranges: tuple[FactorRange, ...]
    variants: tuple[str | None, ...] = (None,)
    num_classes: int = 1000
    source: str = field(default="", compare=False)

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | Traversable) -> FactorSpace:
        return cls.from_dict(read_space_toml(path), source=str(path))

    @classmethod
    def default(cls, family: str = "v2") -> FactorSpace:
        if family not in DEFAULT_SPACES:
            raise ConfigError(f"family: {family!r} is not one of {', '.join(DEFAULT_SPACES)}")
        return cls.load(DEFAULT_SPACES[family])

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> FactorSpace:
        family = data.get("family")
        if family not in DEFAULT_SPACES:
            raise ConfigError(f"space: family must be one of {', '.join(DEFAULT_SPACES)}, got {family!r}")
        ranges = []
        for name in FACTORS:
            spec = data.get(name)
            if not isinstance(spec, dict) or not {"min", "max", "step"} <= set(spec):
                raise ConfigError(f"space: [{name}] needs min, max and step")
            ranges.append(FactorRange(name, spec["min"], spec["max"], spec["step"]))
        variants = tuple(data.get("variants", [])) if family == "v1" else (None,)
        if family == "v1" and not variants:
            raise ConfigError("space: a v1 space needs variants, e.g. [\"xxs\", \"xs\", \"s\"]")
        space = cls(family, tuple(ranges), variants, int(data.get("num_classes", 1000)), source)
        space.config(space.lower_corner())  # fail early on values the generator cannot build
        return space

    def with_num_classes(self, num_classes: int) -> FactorSpace:
        return FactorSpace(self.family, self.ranges, self.variants, num_classes, self.source)

    # ---- points -------------------------------------------------------------------------------------
    def range(self, name: str) -> FactorRange:
        return self.ranges[FACTORS.index(name)]

    def config(self, values: dict[str, float], variant: str | None = None) -> ArchConfig:
        """The config with these factor values (and variant; default the space's first) in this space."""
        return ArchConfig(
            self.family,
            resolution=int(values["resolution"]),
            width=values["width"],
            mv2_depth=values["mv2_depth"],
            vit_depth=values["vit_depth"],
            num_classes=self.num_classes,
            variant=variant if variant is not None else self.variants[0],
        )

    def lower_corner(self) -> dict[str, float]:
        return {r.name: r.min for r in self.ranges}

    def __len__(self) -> int:
        return len(self.variants) * math.prod(len(r.values()) for r in self.ranges)

    def grid(self) -> Iterator[ArchConfig]:
        for variant in self.variants:
            for values in product(*(r.values() for r in self.ranges)):
                yield self.config(dict(zip(FACTORS, values)), variant)

    def sample(self, n: int, seed: int = 0) -> list[ArchConfig]:
        """``n`` grid points drawn uniformly (without replacement while the grid lasts)."""
        rng = random.Random(seed)
        axes = [self.variants, *(r.values() for r in self.ranges)]
        total = len(self)
        picks = rng.sample(range(total), n) if n <= total else [rng.randrange(total) for _ in range(n)]
        configs = []
        for index in picks:
            chosen = []
            for axis in reversed(axes):
                index, i = divmod(index, len(axis))
                chosen.append(axis[i])
            variant, *values = reversed(chosen)
            configs.append(self.config(dict(zip(FACTORS, values)), variant))
        return configs

    def check(self, config: ArchConfig) -> None:
        """Raise ``ConfigError`` naming the first factor of ``config`` that is not on this space's grid."""
        if config.family != self.family:
            raise ConfigError(f"family: {config.family!r} is not this space's {self.family!r}")
        if config.variant not in self.variants:
            raise ConfigError(f"variant: {config.variant!r} is not one of {', '.join(map(str, self.variants))}")
        for r in self.ranges:
            if not r.contains(getattr(config, r.name)):
                raise ConfigError(f"{r.name}: {getattr(config, r.name):g} is not in the space ({r.describe()})")

    def contains(self, config: ArchConfig) -> bool:
        try:
            self.check(config)
        except ConfigError:
            return False
        return True

    # ---- coordinates --------------------------------------------------------------------------------
    def encode(self, configs: Iterable[ArchConfig]) -> np.ndarray:
        """Configs as rows of [0, 1]^k: the four factors scaled by their ranges (plus the variant for v1)."""
        rows = []
        for c in configs:
            row = [
                (getattr(c, r.name) - r.min) / (r.max - r.min) if r.max > r.min else 0.0 for r in self.ranges
            ]
            if len(self.variants) > 1:
                row.append(self.variants.index(c.variant) / (len(self.variants) - 1))
            rows.append(row)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.dims)

    @property
    def dims(self) -> int:
        return len(FACTORS) + (1 if len(self.variants) > 1 else 0)
