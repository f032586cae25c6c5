"""Precomputed lists into the serving cache: pipelined writes under the keys the service reads.

A list written here for (model version, user, k) is what ``POST /v1/recommendations`` with that
``user_id`` and ``k`` (no filters, no context) answers from the cache, marked ``cached``. Keys carry
the model version, so lists of a new artifact never mix with the old one's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from recsys.cache_keys import DEFAULT_PREFIX, list_payload, lists_key, params_field
from recsys.recommender import Recommendation


def export_lists(
    client: redis.Redis,
    model_version: str,
    lists: Iterable[tuple[str, str, Sequence[Recommendation]]],
    *,
    k: int,
    ttl_s: int,
    prefix: str = DEFAULT_PREFIX,
    batch: int = 1000,
) -> int:
    """Write (user id, basis, recommendations) lists; returns how many were written."""
    field, written = params_field(k), 0
    pipe = client.pipeline(transaction=False)
    for user_id, basis, recs in lists:
        key = lists_key(prefix, model_version, user_id)
        pipe.hset(key, field, list_payload(recs, model_version, basis))
        pipe.expire(key, ttl_s)
        written += 1
        if written % batch == 0:
            pipe.execute()
    pipe.execute()
    return written
