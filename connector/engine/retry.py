"""The one retry policy object: exponential backoff with jitter, bounded by attempts and age."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """``schedule`` gives the delay (seconds) after the 1st, 2nd... failure; past its end the
    last delay repeats. ``jitter`` spreads each delay by up to that share either way, so many
    documents failing together do not retry together. A document is dead after
    ``max_attempts`` failures or once ``max_age`` seconds have passed since it was queued."""

    schedule: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)
    max_attempts: int = 10
    max_age: float = 72 * 3600.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.schedule or any(d < 0 for d in self.schedule):
            raise ValueError("retry schedule must list one or more non-negative delays")
        if self.max_attempts < 1:
            raise ValueError("retry max_attempts must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("retry jitter must be in [0, 1)")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based)."""
        base = self.schedule[min(max(failures, 1), len(self.schedule)) - 1]
        return max(0.0, base * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def exhausted(self, failures: int, age: float) -> bool:
        return failures >= self.max_attempts or age >= self.max_age
