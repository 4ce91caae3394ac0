"""Lexical features that complement embeddings: word and character-bigram overlap."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9']+")
_CJK = re.compile(r"[\u3400-\u9fff]+")
STOP = frozenset("i a an the to my me is it of for on in and or please want would like "
                 "can could you your i'd i'm im about with do does need".split())


def features(text: str) -> frozenset[str]:
    """English content words (crudely stemmed) and Chinese character bigrams."""
    low = text.lower()
    out = {_stem(w) for w in _WORD.findall(low) if w not in STOP}
    for run in _CJK.findall(low):
        out.update(run[i:i + 2] for i in range(len(run) - 1))
        if len(run) == 1:
            out.add(run)
    return frozenset(out)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def overlap(query: frozenset[str], example: frozenset[str]) -> float:
    """Share of the query's features the example also has."""
    if not query:
        return 0.0
    return len(query & example) / len(query)


def contains_phrase(text: str, phrase: str) -> bool:
    return phrase_finder(text)(phrase)


def phrase_finder(text: str):
    """contains_phrase(text, .) for many phrases: the text is tokenised once."""
    low = text.lower()
    padded = f" {' '.join(_WORD.findall(low))} "

    def has(phrase: str) -> bool:
        p = phrase.lower().strip()
        if not p:
            return False
        return f" {p} " in padded if p.isascii() else p in low

    return has


def normal_phrase(phrase: str) -> str:
    """A keyword as rank() compares it: lowercase words joined by one space, or the CJK text."""
    low = phrase.lower().strip()
    return " ".join(_WORD.findall(low)) if low.isascii() else low


def word_ngrams(text: str, longest: int) -> set[str]:
    """Every run of 1..longest consecutive words, as normal_phrase() writes them."""
    words = _WORD.findall(text.lower())
    return {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
