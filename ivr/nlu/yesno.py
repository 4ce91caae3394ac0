"""Yes/no from speech, in English and Mandarin."""

from __future__ import annotations

import re

_NO = ("no", "nope", "nah", "not", "don't", "dont", "wrong", "incorrect", "negative", "cancel",
       "不是", "不对", "不要", "不用", "没有", "错", "否", "不")
_YES = ("yes", "yeah", "yep", "yup", "correct", "right", "sure", "ok", "okay", "please",
        "affirmative", "exactly", "that's it", "go ahead", "confirm",
        "是的", "是", "对", "好的", "好", "可以", "确认", "没错", "嗯", "行")
# "I don't know" / 不知道 hold a "no" word but answer neither: checked first, they give None.
_UNSURE = ("don't know", "dont know", "do not know", "not sure", "no idea", "unsure", "dunno",
           "can't tell", "cannot tell", "can't say", "maybe", "not certain",
           "不知道", "不清楚", "说不清", "不确定", "不好说", "不晓得", "不太清楚", "也许", "可能")
_WORD = re.compile(r"[a-z']+")


def yes_or_no(text: str) -> str | None:
    """'yes', 'no', or None when the answer is neither or both."""
    low = text.lower().strip()
    words = set(_WORD.findall(low))
    padded = " " + " ".join(_WORD.findall(low)) + " "
    if any((f" {p} " in padded if p.isascii() else p in low) for p in _UNSURE):
        return None
    # 没错 ("no mistake") is a yes although it holds 错: it must not count as a negative.
    bare = low.replace("没错", " ")
    phrases = [p for p in _NO if (p in words if p.isascii() and " " not in p else p in bare)]
    # "不是" contains "是": a negative Chinese phrase wins over the bare positive inside it.
    if phrases:
        return "no"
    if any((p in words if p.isascii() and " " not in p else p in low) for p in _YES):
        return "yes"
    return None
