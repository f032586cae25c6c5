"""The cache's key layout and payload format, shared by the service and by batch export.

One Redis hash per (model version, user) holds that user's lists, one field per set of request
parameters, so invalidating a user after an event is one ``DEL`` and a batch job's precomputed list
is found by the same lookup the service makes::

    {prefix}:lists:{model_version}:{user_id}   hash  field = params_field(...)  value = list_payload(...)
    {prefix}:recent:{user_id}                  list  item ids of events since training, oldest first
    {prefix}:catalogue                         stream  items added, changed or withdrawn since training,
                                                       replayed by every worker in order

The payload is the response body without the per-request fields (request id, cached flag), as
compact JSON bytes, so a cache hit is answered without decoding it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.recommender import Recommendation

DEFAULT_PREFIX = "recsys"


def lists_key(prefix: str, model_version: str, user_id: str) -> str:
    return f"{prefix}:lists:{model_version}:{user_id}"


def recent_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:recent:{user_id}"


def catalogue_key(prefix: str) -> str:
    return f"{prefix}:catalogue"


def params_field(k: int, filters: dict[str, Any] | None = None, context: Sequence[str] = ()) -> str:
    """The hash field of one request's parameters: ``k=10`` for the plain request (what batch
    scoring writes), with a digest of the filters and context when they are given."""
    extra = {key: value for key, value in (filters or {}).items() if value not in (None, [], ())}
    if not extra and not context:
        return f"k={k}"
    blob = json.dumps({"filters": extra, "context": list(context)}, sort_keys=True, separators=(",", ":"))
    return f"k={k}:{hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()}"


def list_payload(recommendations: Sequence[Recommendation], model_version: str, basis: str) -> bytes:
    """The cached part of a recommendations response."""
    items = [
        {"item_id": r.item_id, "score": round(r.score, 6), "reasons": r.reasons} for r in recommendations
    ]
    body = {"model_version": model_version, "basis": basis, "items": items}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
