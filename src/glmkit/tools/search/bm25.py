"""BM25 text ranking (Robertson & Zaragoza; k1 = 1.5, b = 0.75) over word tokens."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

# CJK characters are single tokens (no spaces between words); other scripts split on non-letters.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens; each CJK character is a token."""
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over pre-tokenised documents."""

    def __init__(self, documents: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(doc) for doc in documents]
        self.lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        self.avgdl = float(self.lengths.mean()) if len(documents) else 0.0
        df: Counter[str] = Counter()
        for counts in self.tf:
            df.update(counts.keys())
        n = len(documents)
        # The "+1" form keeps every idf positive, so a term in most documents still counts a little.
        self.idf = {term: math.log((n - f + 0.5) / (f + 0.5) + 1.0) for term, f in df.items()}

    def scores(self, query: list[str]) -> np.ndarray:
        """BM25 score of every document for the query tokens."""
        out = np.zeros(len(self.tf))
        if not len(self.tf):
            return out
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths / (self.avgdl or 1.0))
        for term in set(query):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([counts.get(term, 0) for counts in self.tf], dtype=np.float64)
            out += idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out
