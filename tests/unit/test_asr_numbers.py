"""Digit runs in recognised speech become digit strings; the rest of the sentence stays as said."""

import pytest

from ivr.nlu.numbers import normalize_numbers, spoken_digits


@pytest.mark.parametrize("text, want", [
    ("four five six seven", "4567"),
    ("Four five six seven.", "4567."),
    ("double two", "22"),
    ("triple five", "555"),
    ("My account number is double two triple five.", "My account number is 22555."),
    ("Double 2 triple 5.", "22555."),  # Whisper writes some digits as numerals
    ("double oh seven", "007"),
    ("two oh two six", "2026"),
    ("one oh one", "101"),
    ("five oh", "50"),
    ("my claim is two oh two six please", "my claim is 2026 please"),
    ("4, 5, 6, 7.", "4567."),  # Whisper's way of writing digits read one by one
    ("4. 5, 6, 7", "4567"),
    ("4 5 6 7", "4567"),
    ("call 555-1234 now", "call 5551234 now"),
    ("It is 4,567 dollars", "It is 4567 dollars"),
    ("one two for three", "1243"),  # "for" between digits is a four
])
def test_english_digit_runs(text, want):
    assert normalize_numbers(text, "en") == want


@pytest.mark.parametrize("text", [
    "I lost one card",  # a lone number word is a word
    "I want to talk to someone",  # "to" is a digit only between digits
    "Press one for sales.",
    "Oh, I see",
    "I said double check",
    "zero",
    "I need to go for a walk",
    "",
])
def test_english_text_without_digit_runs_is_unchanged(text):
    assert normalize_numbers(text, "en") == text


@pytest.mark.parametrize("text, want", [
    ("四五六七", "4567"),
    ("我的卡号是幺二三四", "我的卡号是1234"),  # 幺 is how 1 is read in numbers
    ("两两三", "223"),  # 两 as 2 inside a digit run
    ("二零二六年", "2026年"),
    ("号码是四、五", "号码是45"),  # read one by one, with pauses
    ("卡号123四五六", "卡号123456"),
    ("洞洞七", "007"),
])
def test_mandarin_digit_runs(text, want):
    assert normalize_numbers(text, "zh") == want


@pytest.mark.parametrize("text", ["我要查一下", "我有两张卡", "乱七八糟", "一五一十地说", "三四个人", "一个"])
def test_mandarin_words_with_number_characters_are_unchanged(text):
    assert normalize_numbers(text, "zh") == text


def test_zh_subtags_use_the_mandarin_rules():
    assert normalize_numbers("四五六七", "zh-CN") == "4567"


def test_spoken_digits_still_extracts_every_digit():
    # the validators' function is untouched by the in-place normaliser
    assert spoken_digits("my claim is two oh two six") == "2026"
    assert spoken_digits(normalize_numbers("double two triple five")) == "22555"
