"""What defines a search problem, as a study stores it (``StudySettings``), and the error of a study that
cannot be opened or resumed as asked (``StudyError``).

A study stores its own settings (space, MAC budget, ladder, data, strategy, seed, latency options) as a user
attribute, so that a resumed run -- or a worker on another machine that knows only the study name and storage
URL -- searches exactly the same problem. The stored form is a plain dict (``to_dict``): the nested
``LatencySettings`` is stored as its dict, so studies made before these types existed resume unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import optuna

from ..latency.budget import LatencyLimit, LatencySettings
from ..model.config import ConfigError
from ..model.space import FactorSpace
from .fidelity import Ladder
from .strategies import get_strategy


class StudyError(ConfigError):
    """A study that cannot be opened or resumed as asked; the message says what to do."""


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a search problem; stored in the study itself."""

    space: dict  # the factor-space TOML, parsed (so remote workers need no file)
    mac_budget: int
    ladder: dict  # fidelity.Ladder.to_dict(): the rungs' profiles, the promoted fraction, the top seeds
    data: str
    strategy: str
    seed: int
    trials: int  # distinct networks the strategy proposes at the first rung
    latency: LatencySettings | None = None  # None: no latency options (trials timed on the defaults, no budget)
    mac_budgets: tuple[int, ...] | None = None  # a family (``run --mac-budget 75M,150M,...``): every budget,
    # cheapest first, ``mac_budget`` being the largest; None: one budget

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every MAC budget the study decides at, cheapest first (one for a single-budget study)."""
        return self.mac_budgets or (self.mac_budget,)

    @property
    def is_family(self) -> bool:
        return len(self.budgets) > 1

    @property
    def budgets_label(self) -> str:
        """The MAC budget(s) in words: ``300M`` or ``75M, 150M, 300M``."""
        return ", ".join(f"{b / 1e6:g}M" for b in self.budgets)

    def factor_space(self) -> FactorSpace:
        return FactorSpace.from_dict(self.space)

    def fidelity_ladder(self) -> Ladder:
        return Ladder.from_dict(self.ladder)

    @property
    def ladder_name(self) -> str:
        """The ladder in one word: its rungs' profile names, cheapest first (``smoke>short``)."""
        return ">".join(r["name"] for r in self.ladder["rungs"])

    @property
    def timing(self) -> LatencySettings:
        """How the study times its trained networks: its latency settings, or the defaults."""
        return self.latency or LatencySettings()

    @property
    def directions(self) -> list[str]:
        """The study's objectives, as its strategy optimises them (accuracy; NSGA-III adds MACs)."""
        return list(get_strategy(self.strategy).directions)

    def latency_limit(self) -> LatencyLimit | None:
        """What every proposal must fit: the study's latency limit (a family's loosest), or None."""
        return self._latency_limit

    def member_limits(self) -> tuple[LatencyLimit | None, ...]:
        """Each budget's latency limit, cheapest first (``LatencySettings.limits``)."""
        return self.latency.limits(len(self.budgets)) if self.latency is not None else (None,) * len(self.budgets)

    @cached_property
    def _latency_limit(self) -> LatencyLimit | None:
        """Read once per settings object: the loop checks every proposal against it."""
        return self.latency.limit() if self.latency is not None else None

    def to_dict(self) -> dict[str, Any]:
        """As stored in the study's ``settings`` attribute."""
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> StudySettings:
        latency, budgets = stored.get("latency"), stored.get("mac_budgets")
        return cls(**{**stored, "latency": None if latency is None else LatencySettings.from_dict(latency),
                      "mac_budgets": None if budgets is None else tuple(budgets)})

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        try:
            stored = dict(study.user_attrs["settings"])
        except KeyError:
            raise StudyError(f"study {study.study_name!r} was not created by archsearch run") from None
        if "ladder" not in stored:
            raise StudyError(f"study {study.study_name!r} was made by an older archsearch (one profile, no rungs); "
                             "start a new study (another --study name)")
        return cls.from_dict(stored)

    def mismatches(self, other: StudySettings) -> list[str]:
        """Settings that differ (the trial count may change on resume: it is how far to go)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in ("space", "mac_budget", "mac_budgets", "ladder", "data", "strategy", "seed", "latency")
                if json.dumps(mine.get(k), sort_keys=True) != json.dumps(theirs.get(k), sort_keys=True)]
