"""Requests waiting for the model are computed together, each getting its own answer."""

from __future__ import annotations

import asyncio

import pytest

from recsys.artifacts import load_recommender
from recsys.errors import ConfigError
from recsys.rank.rules import Filters
from serving.model import ModelHolder
from serving.store import MemoryStore

USERS = [f"U{i:06d}" for i in range(24)]


@pytest.fixture(scope="module")
def rec(hybrid_artifact):
    return load_recommender(hybrid_artifact)


def _holder(concurrency: int) -> ModelHolder:
    return ModelHolder(MemoryStore(60, 100, 10, 60), model_threads=1, model_concurrency=concurrency)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_concurrent_requests_are_batched_and_each_gets_its_own_list(rec, concurrency):
    holder = _holder(concurrency)
    calls = []
    real = rec.recommend_users

    def counting(requests, *args, **kwargs):
        calls.append(len(requests))
        return real(requests, *args, **kwargs)

    async def main():
        rec.recommend_users = counting
        try:
            return await asyncio.gather(
                *(
                    holder.recommend(rec, u, [], 5, Filters(), with_reasons=True, ranking="hybrid")
                    for u in USERS
                )
            )
        finally:
            del rec.recommend_users

    results = asyncio.run(main())
    assert sum(calls) == len(USERS) and len(calls) < len(USERS)  # fewer passes than requests
    for user, (recs, basis) in zip(USERS, results, strict=True):
        alone, alone_basis = rec.recommend_user(user, 5)
        assert [r.item_id for r in recs] == [r.item_id for r in alone] and basis == alone_basis


def test_one_failing_request_does_not_fail_the_others_in_its_batch(rec):
    holder = _holder(1)
    real = rec.recommend_users

    def picky(requests, *args, **kwargs):
        if any(u == "U000007" for u, _ in requests):
            raise ConfigError("U000007 cannot be served")
        return real(requests, *args, **kwargs)

    async def main():
        rec.recommend_users = picky
        try:
            return await asyncio.gather(
                *(
                    holder.recommend(rec, u, [], 5, Filters(), with_reasons=False, ranking="hybrid")
                    for u in USERS[:12]
                ),
                return_exceptions=True,
            )
        finally:
            del rec.recommend_users

    results = asyncio.run(main())
    assert isinstance(results[7], ConfigError)
    assert all(isinstance(r, tuple) and len(r[0]) == 5 for i, r in enumerate(results) if i != 7)


def test_requests_with_other_parameters_are_not_mixed(rec):
    holder = _holder(1)

    async def main():
        return await asyncio.gather(
            holder.recommend(rec, USERS[0], [], 3, Filters(), with_reasons=False, ranking="hybrid"),
            holder.recommend(rec, USERS[1], [], 6, Filters(), with_reasons=False, ranking="hybrid"),
            holder.recommend(rec, USERS[2], [], 4, Filters(), with_reasons=False, ranking="als"),
        )

    (a, _), (b, _), (c, _) = asyncio.run(main())
    assert (len(a), len(b), len(c)) == (3, 6, 4)
    assert [r.item_id for r in c] == [r.item_id for r in rec.recommend_user(USERS[2], 4, ranking="als")[0]]


class _SlowModel:
    """A stand-in recommender whose pass takes ``seconds`` whatever its size (as a real one nearly does)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.batches = seconds, []

    def recommend_users(self, requests, *args, **kwargs):
        import time

        self.batches.append(len(requests))
        time.sleep(self.seconds)
        return [([], "history") for _ in requests]


def _closed_loop(holder: ModelHolder, model: _SlowModel, clients: int, requests: int) -> float:
    """``clients`` that each ask again a few ms after their answer; returns the mean latency."""
    import random
    import time

    rng = random.Random(0)
    latencies = []

    async def client(c: int) -> None:
        await asyncio.sleep(rng.uniform(0, 0.006))
        for _ in range(requests):
            t0 = time.perf_counter()
            await holder.recommend(model, f"U{c}", [], 5, Filters(), with_reasons=False, ranking="hybrid")
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(rng.uniform(0.0005, 0.004))  # the response travels, the next request comes

    async def main() -> None:
        await asyncio.gather(*(client(c) for c in range(clients)))

    asyncio.run(main())
    return sum(latencies) / len(latencies)


def test_a_pass_waits_briefly_for_clients_about_to_ask_again():
    gathering, eager = _holder(1), _holder(1)
    eager.max_gather = 0.0
    full, split = _SlowModel(0.015), _SlowModel(0.015)
    _closed_loop(gathering, full, clients=4, requests=12)
    _closed_loop(eager, split, clients=4, requests=12)
    # Without waiting, clients that come back a little apart split into alternating groups; with
    # it, passes take everyone, so there are fewer of them.
    assert sum(full.batches) == sum(split.batches) == 48
    assert len(full.batches) < len(split.batches), (full.batches, split.batches)
    assert sum(full.batches) / len(full.batches) >= 3.0, full.batches


def test_one_client_alone_is_never_held_back():
    holder, model = _holder(1), _SlowModel(0.015)
    latency = _closed_loop(holder, model, clients=1, requests=10)
    assert model.batches == [1] * 10
    assert latency < 0.015 + 0.005  # the pass itself, not the gathering window
