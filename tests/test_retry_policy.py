"""The one retry policy object (connector.retry.RetryPolicy): the durable schedule the engine
uses, the exponential in-call policy of the axis client and the webhook, and the ``run`` loop.
Deterministic: seeded random generators, a fake sleep and a fake clock; nothing waits."""

from __future__ import annotations

import math
import random

import pytest

from connector.axis._http import call_with_retries, retry_policy
from connector.axis.errors import AxisError, RetryableAxisError
from connector.retry import RetryPolicy


class Flaky:
    """A call that fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError):
        self.left, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error(f"failure {self.calls}")
        return "ok"


# ------------------------------------------------------------------ durable schedule


def test_schedule_delays_with_proportional_jitter_and_last_delay_repeating():
    policy = RetryPolicy((10.0, 100.0), max_attempts=5, jitter=0.2, rng=random.Random(7))
    delays = [policy.delay(n) for n in (1, 2, 3, 9)]
    assert 8.0 <= delays[0] <= 12.0
    assert all(80.0 <= d <= 120.0 for d in delays[1:])
    assert policy.delay(0) <= 12.0  # "0 failures" is read as the first
    again = RetryPolicy((10.0, 100.0), max_attempts=5, jitter=0.2, rng=random.Random(7))
    assert [again.delay(n) for n in (1, 2, 3, 9)] == delays  # same seed, same delays


def test_no_jitter_gives_the_schedule_exactly():
    policy = RetryPolicy((5.0, 30.0, 120.0), jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [5.0, 30.0, 120.0, 120.0, 120.0]


def test_defaults_are_the_engine_schedule():
    policy = RetryPolicy(jitter=0.0)
    assert policy.schedule == (5.0, 30.0, 120.0, 600.0, 1800.0)
    assert (policy.max_attempts, policy.max_age) == (10, 72 * 3600.0)
    assert RetryPolicy().jitter == 0.2


def test_exhausted_by_attempts_or_age():
    policy = RetryPolicy((1.0,), max_attempts=3, max_age=60.0)
    assert not policy.exhausted(2, 59.9)
    assert policy.exhausted(3, 0.0)
    assert policy.exhausted(1, 60.0)
    assert not policy.exhausted(2)  # age defaults to 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": ()}, "one or more non-negative delays"),
        ({"schedule": (1.0, -1.0)}, "one or more non-negative delays"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"jitter": 1.0}, "jitter must be in"),
        ({"jitter": "half"}, "jitter must be in"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


# ------------------------------------------------------------------ exponential (in-call) policies


def test_exponential_doubles_up_to_the_cap_with_full_jitter():
    policy = RetryPolicy.exponential(0.5, retries=6, cap=3.0, rng=random.Random(1))
    assert policy.schedule == (0.5, 1.0, 2.0, 3.0)  # the cap then repeats
    assert policy.max_attempts == 7 and policy.max_age == math.inf and policy.jitter == "full"
    for n, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (6, 3.0)]:
        for _ in range(50):
            assert 0.0 <= policy.delay(n) <= ceiling


def test_exponential_without_cap_and_with_no_retries():
    assert RetryPolicy.exponential(1.0, retries=3).schedule == (1.0, 2.0, 4.0)
    once = RetryPolicy.exponential(1.0, retries=0)
    assert once.max_attempts == 1 and once.exhausted(1)
    assert RetryPolicy.exponential(1.0, retries=-2).max_attempts == 1  # as before: no retry


def test_axis_policy_maps_retries_and_backoff():
    policy = retry_policy(3, 0.5)
    assert policy.schedule == (0.5, 1.0, 2.0) and policy.max_attempts == 4
    assert retry_policy(10, 10.0).schedule == (10.0, 20.0, 30.0)  # capped at 30 s


# ------------------------------------------------------------------ run


def test_run_retries_until_success_sleeping_the_policy_delays():
    sleeps: list[float] = []
    policy = RetryPolicy((1.0, 2.0), max_attempts=5, jitter=0.0)
    call = Flaky(3)
    assert policy.run(call, retry_on=ConnectionError, sleep=sleeps.append) == "ok"
    assert call.calls == 4
    assert sleeps == [1.0, 2.0, 2.0]


def test_run_gives_up_after_max_attempts_with_the_last_error():
    sleeps: list[float] = []
    policy = RetryPolicy.exponential(0.5, retries=2, rng=random.Random(3))
    call = Flaky(10)
    with pytest.raises(ConnectionError, match="failure 3"):
        policy.run(call, retry_on=(TimeoutError, ConnectionError), sleep=sleeps.append)
    assert call.calls == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_run_does_not_retry_other_errors():
    sleeps: list[float] = []
    call = Flaky(1, KeyError)
    with pytest.raises(KeyError):
        RetryPolicy.exponential(1.0, retries=3).run(call, retry_on=ConnectionError, sleep=sleeps.append)
    assert call.calls == 1 and sleeps == []


def test_run_gives_up_when_too_old():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RetryPolicy((10.0,), max_attempts=100, max_age=25.0, jitter=0.0)
    call = Flaky(100)
    with pytest.raises(ConnectionError):
        policy.run(call, retry_on=ConnectionError, sleep=sleep, clock=lambda: now[0])
    assert call.calls == 4  # failures at t = 0, 10, 20 and 30 s; at 30 s the work is past max_age
    assert now[0] == 30.0


def test_axis_call_with_retries_repeats_only_safe_operations():
    policy = RetryPolicy((0.0,), max_attempts=3, jitter=0.0)  # no waiting: call_with_retries sleeps for real
    safe = Flaky(2, RetryableAxisError)
    assert call_with_retries(policy, safe, safe=True) == "ok"
    assert safe.calls == 3
    unsafe = Flaky(1, RetryableAxisError)
    with pytest.raises(RetryableAxisError):
        call_with_retries(policy, unsafe, safe=False)
    assert unsafe.calls == 1
    permanent = Flaky(1, AxisError)
    with pytest.raises(AxisError):
        call_with_retries(policy, permanent, safe=True)
    assert permanent.calls == 1
