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


# --- Digit runs rewritten in place, for recognised speech ------------------------------------
# spoken_digits() above keeps only the digits (for a digit slot); normalize_numbers() keeps the
# sentence and rewrites just the runs of spoken digits, so the router and the logs see
# "my card ends 4567" rather than "my card ends four five six seven".

_DIGIT_WORDS = {w: d for w, d in _EN.items() if w not in ("to", "too", "for", "o", "oh")}
_SOFT_WORDS = {"oh": "0", "o": "0", "to": "2", "too": "2", "for": "4"}  # only inside a run
_EN_TOKEN = re.compile(r"[A-Za-z]+|\d+")
_EN_GAP = re.compile(r"[ ,.\-]*")  # what may sit between two digits of one run ("4. 5, 6")
_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")  # 4,567 -> 4567 (Whisper's thousands commas)
_ZH_RUN = re.compile(r"[0-9零〇洞幺一二两三四五六七八九](?:[，、, ]*[0-9零〇洞幺一二两三四五六七八九])+")
_ZH_IDIOMS = ("一五一十", "三三两两", "一一", "乱七八糟", "七上八下", "十之八九", "三五成群")


def normalize_numbers(text: str, lang: str = "en") -> str:
    """`text` with every run of spoken digits written as one digit string: "four five six
    seven" -> "4567", "double two" -> "22", "two oh two six" -> "2026", 四五六七 -> 4567,
    幺 as 1 and 两 as 2 in a run. A lone digit word ("one card", 一下) stays a word."""
    if lang.startswith("zh"):
        return _normalize_zh(text)
    return _normalize_en(_GROUPED.sub(lambda m: m.group().replace(",", ""), text))


def _normalize_en(text: str) -> str:
    tokens = list(_EN_TOKEN.finditer(text))
    out, last, i = [], 0, 0
    while i < len(tokens):
        end, digits = _en_run(text, tokens, i)
        if end > i and (len(digits) >= 2 and end - i >= 2 or _has_repeat(tokens, i, end)):
            out.append(text[last:tokens[i].start()] + digits)
            last, i = tokens[end - 1].end(), end
        else:
            i += 1
    return "".join(out) + text[last:]


def _en_run(text: str, tokens: list, i: int) -> tuple[int, str]:
    """The run of digit tokens starting at tokens[i]: (index after its end, its digits)."""
    digits, j = "", i
    while j < len(tokens):
        if j > i and not _EN_GAP.fullmatch(text[tokens[j - 1].end():tokens[j].start()]):
            break
        word = tokens[j].group().lower()
        if word.isdigit():
            digits += word
        elif word in _DIGIT_WORDS:
            digits += _DIGIT_WORDS[word]
        elif word in _REPEAT and j + 1 < len(tokens) and _single_digit(tokens[j + 1].group()):
            digits += _single_digit(tokens[j + 1].group()) * _REPEAT[word]
            j += 1
        elif word in _SOFT_WORDS and _soft_digit(text, tokens, i, j):
            digits += _SOFT_WORDS[word]
        else:
            break
        j += 1
    return j, digits


def _single_digit(word: str) -> str:
    """"five" or "5" -> "5" (what "double"/"triple" may repeat); "" otherwise."""
    word = word.lower()
    return word if len(word) == 1 and word.isdigit() else _EN.get(word, "")


def _soft_digit(text: str, tokens: list, start: int, j: int) -> bool:
    """"oh", "to", "for" are digits only between digit words ("two oh two six"); "oh" may also
    end or start a run when a digit word touches it without a comma ("oh two three")."""
    def digit_at(k: int) -> bool:
        return 0 <= k < len(tokens) and (tokens[k].group().isdigit() or tokens[k].group().lower() in _DIGIT_WORDS
                                         or tokens[k].group().lower() in _REPEAT)
    word = tokens[j].group().lower()
    before = j > start and digit_at(j - 1)
    after = digit_at(j + 1) and _EN_GAP.fullmatch(text[tokens[j].end():tokens[j + 1].start()]) \
        and "," not in text[tokens[j].end():tokens[j + 1].start()]
    if word in ("oh", "o"):
        return bool(before or after)
    return bool(before and after)


def _has_repeat(tokens: list, i: int, end: int) -> bool:
    return any(t.group().lower() in _REPEAT for t in tokens[i:end])


def _normalize_zh(text: str) -> str:
    def digits(m: re.Match) -> str:
        run = m.group()
        chars = [c for c in run if c.isdigit() or c in _ZH]
        spaced = len(chars) < len(run)  # "四、五": spoken one by one
        if len(chars) < 3 and not spaced or any(idiom in _context(m) for idiom in _ZH_IDIOMS):
            return run
        return "".join(c if c.isascii() else _ZH[c] for c in chars)
    return _ZH_RUN.sub(digits, text)


def _context(m: re.Match) -> str:
    return m.string[max(0, m.start() - 2):m.end() + 2]
