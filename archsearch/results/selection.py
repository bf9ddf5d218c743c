"""A verdict that counts selection: posterior draws of the deciding networks' accuracies.

At a deciding rung every network is scored on the same validation images. One draw of what each network's
accuracy could be, given what was measured:

* **validation images** -- a Bayesian bootstrap: Dirichlet(1, ..., 1) weights over the images, the same
  weights for every network (the comparison is paired: two networks that fail on the same hard images do not
  differ by them);
* **seeds** -- each network's mean over its seeds moves by its training noise, ``std * t(df) / sqrt(seeds)``
  (the rung's noise and its degrees of freedom: an estimate from few repeats has heavy tails);
* **bias** -- where the deciding rung's bias against a higher fidelity was measured, each network moves by
  it too, and the verdict is about that fidelity; where it was not, the verdict is about the deciding rung.
  Its systematic part, a shift with the network's resolution (``noise.RESOLUTION_SLOPE``), moves each
  network's point estimate (``Draws.point``), and its slope is drawn once a draw for all networks.

From the draws: **P(best)**, the share of draws in which a network is the most accurate; and **margins whose
interval counts the choice**. The winner is chosen after seeing the scores, so a plain 95 % interval of
"winner minus baseline" is too optimistic (the winner is partly the luckiest). The intervals here are
simultaneous over every comparison the verdict could have printed -- any deciding network against any
baseline -- with the max-|t| method: the 95th percentile, over draws, of the largest standardised deviation
among all those comparisons. Whichever network wins, its intervals cover with at least 95 % together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..search.networks import Network, by_score
from ..search.noise import REFERENCE_SIDE, Noise

DRAWS = 4000


@dataclass(frozen=True)
class Draws:
    """``accuracy[d, i]``: draw ``d`` of network ``i``'s accuracy (the order of ``networks``); ``point[i]``: its
    point estimate (its mean score moved by the rung's resolution shift)."""

    networks: tuple[Network, ...]
    accuracy: np.ndarray
    point: np.ndarray

    def p_best(self, among: Sequence[int] | range | None = None) -> np.ndarray:
        """P(best) of each network of ``among`` (default all): the share of draws in which it is the most
        accurate of them."""
        among = list(range(len(self.networks)) if among is None else among)
        best = np.argmax(self.accuracy[:, among], axis=1)
        return np.bincount(best, minlength=len(among)) / len(self.accuracy)

    def simultaneous(self, pairs: Sequence[tuple[int, int]], level: float = 0.95) -> dict[tuple[int, int], tuple]:
        """For each pair (i, j): (margin mean_i - mean_j, (low, high), standard error), the intervals
        simultaneous over ``pairs`` at ``level`` (max-|t| over the draws)."""
        if not pairs:
            return {}
        observed = np.array([self.point[i] - self.point[j] for i, j in pairs])
        drawn = np.stack([self.accuracy[:, i] - self.accuracy[:, j] for i, j in pairs], axis=1)
        se = drawn.std(axis=0, ddof=1)
        se = np.where(se > 0, se, np.finfo(float).tiny)
        worst = np.max(np.abs(drawn - observed) / se, axis=1)
        q = float(np.quantile(worst, level))
        return {pair: (float(d), (float(d - q * s), float(d + q * s)), float(s))
                for pair, d, s in zip(pairs, observed, se)}


def draw(networks: Sequence[Network], noise: Noise, seed: int = 0, n: int = DRAWS) -> Draws:
    """Posterior draws of the accuracies of ``networks`` (all at one rung): validation images, seeds and, where
    measured, the rung's bias."""
    rng = np.random.default_rng(seed)
    networks = tuple(networks)
    images = _images(networks)
    weights = rng.dirichlet(np.ones(images), size=n) if images else None
    columns = []
    for net in networks:
        if weights is not None and net.hits:
            per_seed = np.stack([net.hits[s].astype(float) for s in net.seeds if s in net.hits])
            centre = weights @ per_seed.mean(axis=0)
            centre += net.mean - float(per_seed.mean())  # the scores' mean (equal where every seed has hits)
        else:
            centre = np.full(n, net.mean)
        df = noise.df if np.isfinite(noise.df) else 1e6
        training = noise.std * rng.standard_t(df, size=n) / np.sqrt(len(net.scores))
        bias = rng.normal(0.0, noise.bias_std, size=n) if noise.bias_std else 0.0
        columns.append(centre + training + bias)
    accuracy = np.stack(columns, axis=1)
    point = np.array([point_estimate(net, noise) for net in networks])
    if noise.moves:
        b = noise.bias
        slope = b.slope + b.slope_se * rng.standard_t(b.slope_df if np.isfinite(b.slope_df) else 1e6, size=n)
        accuracy += slope[:, None] * (np.log2([net.config.resolution for net in networks]) - np.log2(REFERENCE_SIDE))
    return Draws(networks, accuracy, point)


def point_estimate(network: Network, noise: Noise) -> float:
    """A network's point estimate at its rung: its mean score, moved by the rung's resolution shift if any."""
    return network.mean + (noise.shift(network.config.resolution) if noise.moves else 0.0)


def by_point(networks: Sequence[Network], noise: Noise) -> list[Network]:
    """The verdict's order: ``point_estimate``, best first; ties go to the cheaper network, then to the earlier one."""
    if not noise.moves:
        return by_score(networks)
    return sorted(networks, key=lambda n: (-point_estimate(n, noise), n.macs))


def _images(networks: Sequence[Network]) -> int:
    """The number of validation images every network was scored on, hit by hit (0: not all were)."""
    sizes = {len(h) for net in networks for h in net.hits.values()}
    if len(sizes) != 1 or any(not net.hits for net in networks):
        return 0
    return sizes.pop()
