"""An offline, deterministic text embedder for KNNFewShot: hashed bag of words.

Each lower-cased word (`\\w+`) adds 1 to one of `dims` buckets chosen by a stable hash (BLAKE2b,
not Python's salted `hash`), and the vector is L2-normalized, so the dot product of two vectors
is the cosine of their word-count vectors. Texts sharing words are near; no model, no download.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIMS = 512
_WORD = re.compile(r"\w+")


def _bucket(word: str, dims: int) -> int:
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dims


def hashing_embed(texts: Sequence[str], dims: int = DIMS) -> npt.NDArray[np.float32]:
    """One L2-normalized row per text."""
    out = np.zeros((len(texts), dims), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(str(text).lower()):
            out[row, _bucket(word, dims)] += 1.0
        norm = float(np.linalg.norm(out[row]))
        if norm > 0:
            out[row] /= norm
    return out
