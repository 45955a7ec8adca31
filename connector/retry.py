"""The one retry policy object: when to try again, how long to wait, when to give up.

It serves both kinds of retry in the connector:

- durable retries, where the engine records a failure and schedules the next try of a document
  or a delivery for later (:meth:`RetryPolicy.delay` after the n-th failure,
  :meth:`RetryPolicy.exhausted` by attempts or age, then the item is dead);
- in-call retries, where one operation is repeated at once a few times before it reports a
  failure (:meth:`RetryPolicy.run`: the axis client's safe reads, the webhook's POST).

The configuration keys map onto it: ``[retry] schedule_s / max_attempts / max_age_h / jitter``
directly; ``[axis] retries`` (with the client's ``backoff``) and a webhook destination's
``retries / backoff_s`` through :meth:`RetryPolicy.exponential`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``schedule`` gives the delay (seconds) after the 1st, 2nd... failure; past its end the
    last delay repeats. ``jitter`` spreads each delay by up to that share either way (0.2:
    ±20 %), so many documents failing together do not retry together; ``jitter="full"`` waits
    a uniform random time in [0, delay] instead ("full jitter", for in-call loops where many
    clients hit one server). The work is given up after ``max_attempts`` failures or once
    ``max_age`` seconds have passed since it started (queued, or the first call).

    The defaults are the engine's durable schedule (the ``[retry]`` defaults of the config).
    """

    schedule: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)
    max_attempts: int = 10
    max_age: float = 72 * 3600.0
    jitter: float | Literal["full"] = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.schedule or any(d < 0 for d in self.schedule):
            raise ValueError("retry schedule must list one or more non-negative delays")
        if self.max_attempts < 1:
            raise ValueError("retry max_attempts must be at least 1")
        if self.jitter != "full" and not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ValueError('retry jitter must be in [0, 1) or "full"')

    @classmethod
    def exponential(
        cls, base: float, *, retries: int, cap: float = math.inf, rng: random.Random | None = None
    ) -> RetryPolicy:
        """``retries`` retries after the first attempt (so ``retries + 1`` attempts), the n-th
        waiting a uniform random time in [0, min(cap, base * 2**(n-1))]; no age limit.
        What ``[axis] retries`` and a webhook's ``retries`` / ``backoff_s`` mean."""
        retries = max(retries, 0)
        schedule: list[float] = []
        delay = float(base)
        for _ in range(max(retries, 1)):
            schedule.append(min(cap, delay))
            if delay >= cap:
                break  # the capped delay repeats from here
            delay *= 2
        extra = {"rng": rng} if rng is not None else {}
        return cls(tuple(schedule), max_attempts=retries + 1, max_age=math.inf, jitter="full", **extra)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based), jitter applied."""
        base = self.schedule[min(max(failures, 1), len(self.schedule)) - 1]
        if self.jitter == "full":
            return self.rng.uniform(0, base)
        return max(0.0, base * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def exhausted(self, failures: int, age: float = 0.0) -> bool:
        """True when no further attempt is due: ``failures`` reached ``max_attempts``, or the
        work is ``age`` seconds old, past ``max_age``."""
        return failures >= self.max_attempts or age >= self.max_age

    def run(
        self,
        call: Callable[[], T],
        *,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """Call ``call`` until it returns; an exception of a ``retry_on`` type is retried after
        :meth:`delay` (waited with ``sleep``) until the policy is :meth:`exhausted`, then the
        last one propagates unchanged. Any other exception propagates at once. ``sleep`` and
        ``clock`` (for the age) are hooks for tests."""
        started = clock()
        failures = 0
        while True:
            try:
                return call()
            except retry_on:
                failures += 1
                if self.exhausted(failures, clock() - started):
                    raise
                sleep(self.delay(failures))
