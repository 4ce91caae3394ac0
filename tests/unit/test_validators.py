"""Slot validators (ivr.flow.validators): every rule, keypad and speech."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from stdnum import luhn

from ivr.flow.validators import SPEC_KEYS, VALIDATORS, Verdict, max_keys, validate


def v(raw, kind, **spec):
    return validate(raw, kind, spec)


def test_every_validator_has_its_spec_keys():
    assert set(VALIDATORS) == set(SPEC_KEYS) == {"digits", "luhn", "regex", "date", "yesno", "amount",
                                                  "text", "choice"}


# -- digits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,kind,spec,want", [
    ("20261101", "dtmf", {"length": 8}, Verdict(True, "20261101")),
    ("2026110", "dtmf", {"length": 8}, Verdict(False, "2026110", "wrong-length")),
    ("202611011", "dtmf", {"length": 8}, Verdict(False, "202611011", "wrong-length")),
    ("12", "dtmf", {"min_length": 2, "max_length": 4}, Verdict(True, "12")),
    ("1", "dtmf", {"min_length": 2, "max_length": 4}, Verdict(False, "1", "wrong-length")),
    ("12345", "dtmf", {"min_length": 2, "max_length": 4}, Verdict(False, "12345", "wrong-length")),
    ("1" * 64, "dtmf", {}, Verdict(True, "1" * 64)),
    ("1" * 65, "dtmf", {}, Verdict(False, "1" * 65, "wrong-length")),
    ("", "dtmf", {}, Verdict(False, "", "not-digits")),
    ("12A", "dtmf", {}, Verdict(False, "12A", "not-digits")),
    ("#", "dtmf", {}, Verdict(False, "#", "not-digits")),
    ("two oh two six one one oh one", "speech", {"length": 8}, Verdict(True, "20261101")),
    ("二零二六一一零一", "speech", {"length": 8}, Verdict(True, "20261101")),
    ("my number is 4 5 6 7", "speech", {"length": 4}, Verdict(True, "4567")),
    ("hello", "speech", {}, Verdict(False, "", "not-digits")),
    ("four five", "click", {"length": 2}, Verdict(True, "45")),
])
def test_digits(raw, kind, spec, want):
    assert validate(raw, kind, {"type": "digits", **spec}) == want


# -- luhn --------------------------------------------------------------------------------------

def _valid_card(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


@pytest.mark.parametrize("number", ["4111111111111111", _valid_card("453201511283036"),
                                    _valid_card("62220212345678901"), _valid_card("37828224631000")])
def test_luhn_valid(number):
    assert luhn.is_valid(number)
    assert v(number, "dtmf", type="luhn") == Verdict(True, number)


@pytest.mark.parametrize("number", ["4111111111111112", "4532015112830367"[:-1] + "0",
                                    _valid_card("453201511283036")[:-1] + "9"])
def test_luhn_invalid_checksum(number):
    if luhn.is_valid(number):  # guard the fixture itself
        pytest.skip("generated number happens to be valid")
    assert v(number, "dtmf", type="luhn") == Verdict(False, number, "bad-checksum")


def test_luhn_length_and_speech():
    assert v("79927398713", "dtmf", type="luhn").reason == "wrong-length"  # valid Luhn, 11 digits
    assert v("79927398713", "dtmf", type="luhn", min_length=11).ok
    assert v("4" + "1" * 19, "dtmf", type="luhn").reason == "wrong-length"
    spoken = "four one one one one one one one one one one one one one one one"
    assert v(spoken, "speech", type="luhn") == Verdict(True, "4111111111111111")
    assert v("4111 1111 1111 1111", "speech", type="luhn").ok


# -- regex -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,kind,spec,want", [
    ("123456", "dtmf", {"pattern": r"\d{6}"}, Verdict(True, "123456")),
    ("12345", "dtmf", {"pattern": r"\d{6}"}, Verdict(False, "12345", "no-match")),
    ("one two three four five six", "speech", {"pattern": r"\d{6}"}, Verdict(True, "123456")),
    ("P100001", "speech", {"pattern": r"P\d{6}"}, Verdict(True, "P100001")),
    ("  P100001 ", "speech", {"pattern": r"P\d{6}"}, Verdict(True, "P100001")),
    ("one two three", "speech", {"pattern": r"\d{3}", "digits": False},
     Verdict(False, "one two three", "no-match")),
    ("abc", "speech", {"pattern": r"\d+"}, Verdict(False, "abc", "no-match")),
    ("123x", "speech", {"pattern": r"\d{3}[\dXx]"}, Verdict(True, "123x")),
])
def test_regex(raw, kind, spec, want):
    assert validate(raw, kind, {"type": "regex", **spec}) == want


def test_regex_must_match_the_whole_entry():
    assert not v("1234567", "dtmf", type="regex", pattern=r"\d{6}").ok
    assert not v("x123456", "speech", type="regex", pattern=r"\d{6}", digits=False).ok


# -- date --------------------------------------------------------------------------------------

TODAY = date.today()
FUTURE = TODAY + timedelta(days=400)
PAST = TODAY - timedelta(days=400)


def ymd(d: date) -> str:
    return d.strftime("%Y%m%d")


@pytest.mark.parametrize("raw,kind,spec,want", [
    ("19850412", "dtmf", {}, Verdict(True, "1985-04-12")),
    ("20240229", "dtmf", {}, Verdict(True, "2024-02-29")),
    ("20230229", "dtmf", {}, Verdict(False, "20230229", "not-a-date")),
    ("20230230", "dtmf", {}, Verdict(False, "20230230", "not-a-date")),
    ("20231301", "dtmf", {}, Verdict(False, "20231301", "not-a-date")),
    ("20230100", "dtmf", {}, Verdict(False, "20230100", "not-a-date")),
    ("1985041", "dtmf", {}, Verdict(False, "1985041", "not-a-date")),
    ("198504120", "dtmf", {}, Verdict(False, "198504120", "not-a-date")),
    ("", "dtmf", {}, Verdict(False, "", "not-a-date")),
    ("one nine eight five oh four one two", "speech", {}, Verdict(True, "1985-04-12")),
    ("1985-04-12", "speech", {}, Verdict(True, "1985-04-12")),
    ("born on 1985-04-12 I think", "speech", {}, Verdict(True, "1985-04-12")),
    ("一九八五零四一二", "speech", {}, Verdict(True, "1985-04-12")),
    ("19850412", "dtmf", {"min": "1900-01-01", "max": "2000-12-31"}, Verdict(True, "1985-04-12")),
    ("18991231", "dtmf", {"min": "1900-01-01"}, Verdict(False, "1899-12-31", "too-early")),
    ("20010101", "dtmf", {"max": "2000-12-31"}, Verdict(False, "2001-01-01", "too-late")),
])
def test_date(raw, kind, spec, want):
    assert validate(raw, kind, {"type": "date", **spec}) == want


def test_date_past_and_future():
    assert v(ymd(PAST), "dtmf", type="date", past=True) == Verdict(True, PAST.isoformat())
    assert v(ymd(FUTURE), "dtmf", type="date", past=True) == Verdict(False, FUTURE.isoformat(), "in-future")
    assert v(ymd(FUTURE), "dtmf", type="date", future=True) == Verdict(True, FUTURE.isoformat())
    assert v(ymd(PAST), "dtmf", type="date", future=True) == Verdict(False, PAST.isoformat(), "in-past")
    assert v(ymd(TODAY), "dtmf", type="date", past=True).ok
    assert v(ymd(TODAY), "dtmf", type="date", future=True).ok


# -- yesno -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,kind,want", [
    ("1", "dtmf", Verdict(True, "yes")), ("2", "dtmf", Verdict(True, "no")),
    ("3", "dtmf", Verdict(False, "", "not-yes-no")), ("12", "dtmf", Verdict(False, "", "not-yes-no")),
    ("yes", "speech", Verdict(True, "yes")), ("no thanks", "speech", Verdict(True, "no")),
    ("是的", "speech", Verdict(True, "yes")), ("不是", "speech", Verdict(True, "no")),
    ("purple", "speech", Verdict(False, "", "not-yes-no")),
])
def test_yesno(raw, kind, want):
    assert v(raw, kind, type="yesno") == want


# -- amount ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,kind,spec,want", [
    ("1250", "dtmf", {}, Verdict(True, "1250.00")),
    ("0", "dtmf", {}, Verdict(True, "0.00")),
    ("1,250.5", "speech", {}, Verdict(True, "1250.50")),
    ("about 99.99 dollars", "speech", {}, Verdict(True, "99.99")),
    ("five hundred", "speech", {}, Verdict(True, "500.00")),
    ("twenty five", "speech", {}, Verdict(True, "25.00")),
    ("50", "dtmf", {"min": 100}, Verdict(False, "50", "out-of-range")),
    ("100", "dtmf", {"min": 100, "max": 5000}, Verdict(True, "100.00")),
    ("5000", "dtmf", {"min": 100, "max": 5000}, Verdict(True, "5000.00")),
    ("5001", "dtmf", {"min": 100, "max": 5000}, Verdict(False, "5001", "out-of-range")),
    ("lots", "speech", {}, Verdict(False, "", "not-an-amount")),
])
def test_amount(raw, kind, spec, want):
    assert validate(raw, kind, {"type": "amount", **spec}) == want


# -- text and choice ---------------------------------------------------------------------------

def test_text():
    assert v("  12   Harbour\tRoad ", "speech", type="text") == Verdict(True, "12 Harbour Road")
    assert v("   ", "speech", type="text") == Verdict(False, "", "empty")
    assert v("x" * 300, "speech", type="text") == Verdict(True, "x" * 200)
    assert v("abcdef", "speech", type="text", max_length=3) == Verdict(True, "abc")


@pytest.mark.parametrize("raw,kind,want", [
    ("1", "dtmf", Verdict(True, "Silver")), ("3", "dtmf", Verdict(True, "Platinum")),
    ("4", "dtmf", Verdict(False, "4", "not-a-choice")), ("0", "dtmf", Verdict(False, "0", "not-a-choice")),
    ("the gold one please", "speech", Verdict(True, "Gold")),
    ("PLATINUM", "speech", Verdict(True, "Platinum")),
    ("bronze", "speech", Verdict(False, "bronze", "not-a-choice")),
    ("gold", "click", Verdict(True, "Gold")),
])
def test_choice(raw, kind, want):
    assert v(raw, kind, type="choice", choices=["Silver", "Gold", "Platinum"]) == want


# -- keys that complete an entry ---------------------------------------------------------------

@pytest.mark.parametrize("spec,want", [
    ({"type": "digits", "length": 8}, 8), ({"type": "digits"}, None),
    ({"type": "digits", "min_length": 2, "max_length": 4}, None), ({"type": "date"}, 8),
    ({"type": "yesno"}, 1), ({"type": "luhn"}, None), ({"type": "regex", "pattern": "x"}, None),
    ({"type": "amount"}, None), ({"type": "text"}, None), ({"type": "choice", "choices": []}, None),
])
def test_max_keys(spec, want):
    assert max_keys(spec) == want
