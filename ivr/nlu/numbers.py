"""Spoken digits to digit strings: "four five six seven" -> 4567, 四五六七 -> 4567, "double two" -> 22."""

from __future__ import annotations

import re

_EN = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2", "to": "2",
       "too": "2", "three": "3", "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7",
       "eight": "8", "nine": "9", "niner": "9"}
_TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
          "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}
_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7,
         "eighty": 8, "ninety": 9}
_REPEAT = {"double": 2, "triple": 3}
_ZH = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "壹": "1", "二": "2", "两": "2",
       "贰": "2", "三": "3", "叁": "3", "四": "4", "肆": "4", "五": "5", "伍": "5", "六": "6",
       "陆": "6", "七": "7", "柒": "7", "八": "8", "捌": "8", "九": "9", "玖": "9"}
_FILLER = {"and", "uh", "um", "er", "dash", "hyphen", "space", "number", "is", "it's", "its",
           "my", "the"}
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")


def spoken_digits(text: str) -> str:
    """Every digit the caller spoke or typed, in order. Words that are not numbers are skipped,
    so "my claim is two oh two six" gives 2026."""
    # Chinese numerals become digit tokens in place, so "2026一一零一" keeps its order.
    # 十 alone is rare in IDs; read it as 10 like callers mean it.
    text = "".join(f" {_ZH[c]} " if c in _ZH else " 10 " if c == "十" else c for c in text)
    words = _TOKEN.findall(text.lower())
    result: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.isdigit():
            result.append(w)
        elif w in _REPEAT and i + 1 < len(words) and words[i + 1] in _EN:
            result.append(_EN[words[i + 1]] * _REPEAT[w])
            i += 1
        elif w in _TENS:
            if i + 1 < len(words) and words[i + 1] in _EN and _EN[words[i + 1]] != "0" \
                    and words[i + 1] not in ("to", "too", "for", "oh", "o"):
                result.append(f"{_TENS[w]}{_EN[words[i + 1]]}")
                i += 1
            else:
                result.append(f"{_TENS[w]}0")
        elif w in _TEENS:
            result.append(_TEENS[w])
        elif w == "hundred" and result:
            result.append("00")
        elif w in _EN and (w not in ("to", "too", "for", "o", "oh") or _near_number(words, i)):
            result.append(_EN[w])
        i += 1
    return "".join(result)


def _near_number(words: list[str], i: int) -> bool:
    """Homophones ("to", "for", "oh") count only between other numbers."""
    def is_num(j: int) -> bool:
        return 0 <= j < len(words) and (words[j].isdigit() or words[j] in _EN and
                                        words[j] not in ("to", "too", "for", "o", "oh")
                                        or words[j] in _TENS or words[j] in _TEENS)
    return is_num(i - 1) or is_num(i + 1)


def has_digits(text: str) -> bool:
    return bool(spoken_digits(text))


_ = _FILLER  # documented fillers are skipped by the default branch
