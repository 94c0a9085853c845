"""Privacy of what evaluators see: per-export pseudonyms and small-cell suppression; pure.

- **Pseudonyms per export**: a keyed hash (HMAC-SHA-256) of the resident id under a random key
  made for one export and never stored, so two exports cannot be linked by pseudonym and a
  pseudonym cannot be turned back into a resident without the key.
- **k-anonymity**: a figure is shown only if at least k distinct residents stand behind it;
  otherwise it is suppressed. When a table shows a total and exactly one of its cells is
  suppressed, the total would give it away, so the next-smallest cell is suppressed as well
  (complementary suppression).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class Pseudonymizer:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._seen: dict[str, str] = {}

    def __call__(self, resident_id: object) -> str:
        rid = str(resident_id)
        p = self._seen.get(rid)
        if p is None:
            digest = hmac.new(self._key, rid.encode(), hashlib.sha256).digest()
            p = "P-" + base64.b32encode(digest[:5]).decode().rstrip("=")
            self._seen[rid] = p
        return p


def small(residents: int, k: int) -> bool:
    """True when a cell with this many distinct residents must be suppressed."""
    return residents < k


def suppress_cells(
    cells: Sequence[T], residents: Callable[[T], int], k: int, with_total: bool = True
) -> list[bool]:
    """Which cells to suppress: primary (< k residents) plus complementary if a total is shown."""
    hidden = [small(residents(c), k) for c in cells]
    if with_total and sum(hidden) == 1 and len(cells) > 1:
        candidates = [i for i, h in enumerate(hidden) if not h]
        nxt = min(candidates, key=lambda i: residents(cells[i]))
        hidden[nxt] = True
    return hidden
