"""Which model version answers a request: canary, A/B (sticky by a key) or shadow.

``primary`` is the model the deployment serves (``serve.model``); ``challenger`` the one
under trial (``serve.traffic.challenger``). A canary sends a random ``percent`` of the
requests to the challenger; A/B sends the same share, but a caller's key always lands
on the same variant; shadow answers from the primary and has the challenger score a
copy whose answer is only logged.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

Variant = Literal["primary", "challenger", "shadow"]
PRIMARY: Variant = "primary"
CHALLENGER: Variant = "challenger"
SHADOW: Variant = "shadow"
Policy = Literal["none", "canary", "ab", "shadow"]


@dataclass(frozen=True)
class Route:
    """The variant that answers, and the one scoring a shadow copy (if any)."""

    answer: Variant
    shadow: Variant | None = None


class TrafficPolicy:
    """Route each request by the deployment's policy."""

    def __init__(self, policy: Policy = "none", percent: float = 0.0, seed: int | None = None):
        if not 0.0 <= percent <= 100.0:
            raise ValueError(
                f"The 'percent' parameter of TrafficPolicy must be in [0, 100]. Got {percent!r}."
            )
        self.policy = policy
        self.percent = percent
        self._random = random.Random(seed)

    def route(self, key: str | None = None) -> Route:
        if self.policy == "shadow":
            return Route(PRIMARY, CHALLENGER)
        if self.policy == "canary" or (self.policy == "ab" and key is None):
            return Route(CHALLENGER if self._random.random() * 100 < self.percent else PRIMARY)
        if self.policy == "ab":
            return Route(CHALLENGER if bucket(key or "") < self.percent else PRIMARY)
        return Route(PRIMARY)


def bucket(key: str) -> float:
    """A stable position in [0, 100) for ``key``: the same caller, the same variant."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100
