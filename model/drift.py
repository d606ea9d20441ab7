"""Drift detectors over what a recommender serves and what users do, and a monitor owning them.

Three signals, one detector each (the names are the ``detector`` label of the drift metrics):

- ``hit_rate_adwin``: the online hit stream (1 when the user's next item was in the list last
  served to them) into river's ADWIN; a drop of the hit rate is drift.
- ``score_page_hinkley``: one number per served list (the mean of its scores) into river's
  Page-Hinkley test, standardised so that its thresholds are in standard deviations.
- ``centroid_shift``: the cosine distance between a fast and a slow exponentially decayed
  centroid of the vectors of the items users interact with.

No metrics library here: :meth:`DriftMonitor.statistics` and :attr:`DriftMonitor.detections`
are what an exporter reads. Settings were chosen on the synthetic shopping workload
(``model.evaluation.synthetic``, ``benchmarks/drift_delay.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from river import drift

HIT_RATE = "hit_rate_adwin"
SCORE = "score_page_hinkley"
CENTROID = "centroid_shift"
DETECTORS = (HIT_RATE, SCORE, CENTROID)


@dataclass(frozen=True)
class Detection:
    """A detector fired at its ``n``-th observation; ``statistic`` is its value then."""

    detector: str
    n: int
    statistic: float


class HitRateDrift:
    """ADWIN on the hit stream x_t in {0, 1}; fires when the hit rate drops.

    ADWIN keeps the longest recent window W whose every split W = W0 . W1 passes
    |mean(W0) - mean(W1)| < eps_cut(delta, |W0|, |W1|) (Hoeffding-style bound); when a split
    fails it drops W0 and reports drift. With ``drops_only`` (default) only cuts after which the
    estimate fell count: a rising hit rate (a model warming up) is not an alarm.
    ``hit_rate`` is ADWIN's estimate mean(W) (NaN before the first hit check).

    >>> detector = HitRateDrift()
    >>> stream = [1, 0, 0] * 300 + [0] * 300          # 33% hits, then none
    >>> fired = [t for t, hit in enumerate(stream) if detector.update(hit)]
    >>> fired[0] - 900, round(detector.hit_rate, 2)   # events after the change
    (91, 0.0)
    """

    name = HIT_RATE

    def __init__(self, delta: float = 0.002, clock: int = 32, drops_only: bool = True) -> None:
        self.drops_only = drops_only
        self._adwin = drift.ADWIN(delta=delta, clock=clock)
        self.n = 0
        self.detected = False
        self.n_detections = 0
        self.hit_rate = math.nan

    def update(self, hit: bool) -> bool:
        """Fold one hit check in; True when drift is detected on it."""
        before = self._adwin.estimation
        self._adwin.update(1.0 if hit else 0.0)
        self.n += 1
        after = self._adwin.estimation
        self.detected = self._adwin.drift_detected and (after < before or not self.drops_only)
        self.n_detections += self.detected
        self.hit_rate = after
        return self.detected


def list_score(scores: Sequence[float] | np.ndarray) -> float:
    """The number a served list contributes to the score stream: the mean of its scores.

    >>> round(list_score([0.9, 0.7, 0.5]), 6)
    0.7
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a served list without scores has no score statistic")
    if not np.isfinite(values).all():
        raise ValueError(f"served scores must be finite, got {values.tolist()}")
    return float(values.mean())


class ScoreDrift:
    """Page-Hinkley on the standardised mean score of each served list.

    x_t = mean score of list t, z_t = (x_t - mu0) / sigma0, with mu0, sigma0 measured over the
    first ``warmup`` lists (and again after every detection: a scale-free threshold and a
    cool-down in one). Page-Hinkley (river) keeps, for a fall,
    M_t = alpha * M_{t-1} + (z_t - zbar_t + delta) and fires when max_{s<=t} M_s - M_t >
    ``threshold``, with zbar_t the mean of z since the last reset (and the mirror image for a
    rise). ``mode`` "down" (default) watches falls only: a worse-fitting model serves lower
    scores. ``mean_score`` is an exponentially weighted mean of x_t, half-life ``gauge_half_life``
    lists, for a gauge (NaN before the first list).

    >>> detector = ScoreDrift(warmup=50)
    >>> rng = np.random.default_rng(0)
    >>> lists = [rng.normal(0.8, 0.05, 10) for _ in range(400)] + [rng.normal(0.7, 0.05, 10) for _ in range(200)]
    >>> fired = [t for t, scores in enumerate(lists) if detector.update(scores)]
    >>> fired, round(detector.mean_score, 2)            # fires 39 lists after the change, once
    ([439], 0.78)
    """

    name = SCORE

    def __init__(
        self,
        threshold: float = 200.0,
        delta: float = 0.3,
        alpha: float = 1 - 1e-4,
        warmup: int = 200,
        mode: str = "down",
        min_instances: int = 30,
        gauge_half_life: float = 500.0,
    ) -> None:
        if warmup < 2:
            raise ValueError("warmup must be >= 2 lists to measure a spread")
        self.warmup = warmup
        self._page_hinkley = lambda: drift.PageHinkley(
            min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode
        )
        self._test = self._page_hinkley()
        self._reference: list[float] = []
        self._mu0 = self._sigma0 = math.nan
        self._decay = 0.5 ** (1.0 / gauge_half_life)
        self.n = 0
        self.detected = False
        self.n_detections = 0
        self.mean_score = math.nan

    def update(self, scores: Sequence[float] | np.ndarray) -> bool:
        """Fold one served list's scores in; True when drift is detected on it."""
        x = list_score(scores)
        self.n += 1
        self.mean_score = x if math.isnan(self.mean_score) else self._decay * self.mean_score + (1 - self._decay) * x
        self.detected = False
        if len(self._reference) < self.warmup:
            self._reference.append(x)
            if len(self._reference) == self.warmup:
                self._mu0 = float(np.mean(self._reference))
                self._sigma0 = max(float(np.std(self._reference)), 1e-9)
            return False
        self._test.update((x - self._mu0) / self._sigma0)
        if self._test.drift_detected:
            self.detected = True
            self.n_detections += 1
            self._test = self._page_hinkley()
            self._reference = []
        return self.detected


class CentroidShift:
    """Cosine distance between a fast and a slow decayed centroid of interacted-item vectors.

    c_f <- a_f * c_f + e_t and c_s <- a_s * c_s + e_t with a = 0.5 ** (1 / half_life) (half-lives
    in events); d_t = 1 - cos(c_f, c_s), the ``distance``. Fires when d_t > ``threshold`` while
    armed, then disarms until d_t < ``rearm`` * threshold and ``cooldown`` events have passed
    (hysteresis, so one shift fires once). Nothing fires before ``min_events`` vectors.

    >>> detector = CentroidShift(fast_half_life=20, slow_half_life=500, threshold=0.2, min_events=50)
    >>> stream = [np.array([1.0, 0.1 * (t % 3)]) for t in range(300)] + [np.array([0.0, 1.0])] * 100
    >>> fired = [t for t, v in enumerate(stream) if detector.update(v)]
    >>> [t - 300 for t in fired], round(detector.distance, 2)   # once, 19 events after the change
    ([19], 0.5)
    """

    name = CENTROID

    def __init__(
        self,
        fast_half_life: float = 200.0,
        slow_half_life: float = 5000.0,
        threshold: float = 0.05,
        rearm: float = 0.5,
        cooldown: int = 2000,
        min_events: int = 1000,
    ) -> None:
        if not 0 < fast_half_life < slow_half_life:
            raise ValueError("need 0 < fast_half_life < slow_half_life")
        self.fast_decay = 0.5 ** (1.0 / fast_half_life)
        self.slow_decay = 0.5 ** (1.0 / slow_half_life)
        self.threshold = threshold
        self.rearm = rearm
        self.cooldown = cooldown
        self.min_events = min_events
        self._fast: np.ndarray | None = None
        self._slow: np.ndarray | None = None
        self._last_fired: int | None = None
        self.armed = True
        self.n = 0
        self.detected = False
        self.n_detections = 0
        self.distance = 0.0

    def update(self, vector: np.ndarray) -> bool:
        """Fold one interacted item's vector in; True when the shift crosses the threshold."""
        x = np.asarray(vector, dtype=np.float64)
        if self._fast is None:
            self._fast, self._slow = np.zeros_like(x), np.zeros_like(x)
        self._fast = self.fast_decay * self._fast + x
        self._slow = self.slow_decay * self._slow + x
        self.n += 1
        norms = float(np.linalg.norm(self._fast) * np.linalg.norm(self._slow))
        self.distance = 1.0 - float(self._fast @ self._slow) / norms if norms > 1e-12 else 0.0
        cooled = self._last_fired is None or self.n - self._last_fired >= self.cooldown
        if not self.armed and cooled and self.distance < self.rearm * self.threshold:
            self.armed = True
        self.detected = self.armed and self.n >= self.min_events and self.distance > self.threshold
        if self.detected:
            self.armed = False
            self._last_fired = self.n
            self.n_detections += 1
        return self.detected


class DriftMonitor:
    """The three detectors behind one object, as a learner or worker feeds them.

    ``observe_hit`` / ``observe_scores`` / ``observe_item`` return a :class:`Detection` when
    their detector fired, else None. :meth:`statistics` gives one number per detector for the
    ``streamrec_drift_statistic`` gauge (hit-rate estimate, mean served-list score, centroid
    cosine distance; NaN before data), :attr:`detections` the counts per detector, and
    :attr:`online_hit_rate` the hit rate over the last ``hit_window`` checks.

    >>> centroid = CentroidShift(fast_half_life=5, slow_half_life=100, threshold=0.1, min_events=20)
    >>> monitor = DriftMonitor(centroid=centroid)
    >>> for _ in range(50):
    ...     _ = monitor.observe_item(np.array([1.0, 0.0]))
    ...     _ = monitor.observe_hit(True)
    >>> fired = [monitor.observe_item(np.array([0.0, 1.0])) for _ in range(4)]
    >>> fired[:3], fired[3].detector, fired[3].n, round(fired[3].statistic, 3)
    ([None, None, None], 'centroid_shift', 54, 0.144)
    >>> monitor.detections, monitor.online_hit_rate
    ({'hit_rate_adwin': 0, 'score_page_hinkley': 0, 'centroid_shift': 1}, 1.0)
    """

    def __init__(
        self,
        hit_rate: HitRateDrift | None = None,
        scores: ScoreDrift | None = None,
        centroid: CentroidShift | None = None,
        hit_window: int = 1000,
    ) -> None:
        self.hit_rate = hit_rate or HitRateDrift()
        self.scores = scores or ScoreDrift()
        self.centroid = centroid or CentroidShift()
        self._recent_hits: deque[bool] = deque(maxlen=hit_window)

    def observe_hit(self, hit: bool) -> Detection | None:
        """One hit check: was the user's item in the list last served to them?"""
        self._recent_hits.append(bool(hit))
        return self._fired(self.hit_rate, self.hit_rate.update(hit), self.hit_rate.hit_rate)

    def observe_scores(self, scores: Sequence[float] | np.ndarray) -> Detection | None:
        """The scores of one served list."""
        return self._fired(self.scores, self.scores.update(scores), self.scores.mean_score)

    def observe_item(self, vector: np.ndarray) -> Detection | None:
        """The vector of the item of one event."""
        return self._fired(self.centroid, self.centroid.update(vector), self.centroid.distance)

    def statistics(self) -> dict[str, float]:
        distance = self.centroid.distance if self.centroid.n else math.nan
        return {HIT_RATE: self.hit_rate.hit_rate, SCORE: self.scores.mean_score, CENTROID: distance}

    @property
    def detections(self) -> dict[str, int]:
        return {
            HIT_RATE: self.hit_rate.n_detections,
            SCORE: self.scores.n_detections,
            CENTROID: self.centroid.n_detections,
        }

    @property
    def online_hit_rate(self) -> float:
        """Share of hits over the last ``hit_window`` checks (NaN before the first)."""
        return sum(self._recent_hits) / len(self._recent_hits) if self._recent_hits else math.nan

    @staticmethod
    def _fired(detector, detected: bool, statistic: float) -> Detection | None:
        return Detection(detector.name, detector.n, statistic) if detected else None
