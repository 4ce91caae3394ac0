"""ivr.yamlsafe: the one YAML reader. Line numbers, duplicate keys, tabs, alias bombs, size, encoding."""

from __future__ import annotations

import time

import pytest

from ivr import yamlsafe
from ivr.yamlsafe import MAX_BYTES, MAX_DEPTH, Document, YamlProblem, decode, load_file, load_text


def load(text: str | bytes) -> Document:
    raw = text.encode() if isinstance(text, str) else text
    return load_text(decode(raw, "t.yaml"), "t.yaml")


def problem(text: str | bytes) -> tuple[int, int, str]:
    with pytest.raises(YamlProblem) as info:
        load(text)
    p = info.value.problem
    assert p.path == "t.yaml" and p.message
    return p.line, p.col, p.code


# --- values and marks ---

def test_plain_values():
    doc = load("a: 1\nb: [x, 2.5, true, null]\nc: {d: e}\n")
    assert doc.data == {"a": 1, "b": ["x", 2.5, True, None], "c": {"d": "e"}}


def test_marks_are_one_based_line_and_column():
    doc = load("id: demo\nsteps:\n  - say: hello\n    id: s1\n  - goto: end\n")
    assert doc.mark(("id",)) == (1, 5)
    assert doc.mark(("steps",)) == (3, 3)
    assert doc.mark(("steps", 0)) == (3, 5)
    assert doc.mark(("steps", 0, "say")) == (3, 10)
    assert doc.mark(("steps", 0, "id")) == (4, 9)
    assert doc.mark(("steps", 0, "id"), key=True) == (4, 5)
    assert doc.mark(("steps", 1, "goto")) == (5, 11)
    assert doc.mark(()) == (1, 1)


def test_mark_of_a_missing_path_falls_back_to_the_nearest_parent():
    doc = load("id: demo\nsteps:\n  - say: hello\n")
    assert doc.mark(("steps", 0, "say", "prompt", "en")) == (3, 10)
    assert doc.mark(("steps", 7)) == (3, 3)
    assert doc.mark(("nope",)) == (1, 1)


def test_problem_is_located():
    doc = load("a:\n  b: 1\n")
    p = doc.problem(("a", "b"), "some-code", "msg")
    assert (p.path, p.line, p.col, p.code) == ("t.yaml", 2, 6, "some-code")
    assert str(p) == "t.yaml:2:6: some-code: msg"


def test_marks_are_character_columns_after_chinese_text():
    doc = load("title: {zh: 欢迎, en: Welcome}\n")
    assert doc.mark(("title", "en")) == (1, 21)


def test_scalars_keep_dates_as_text_and_accept_yaml_11_numbers():
    doc = load("d: 2026-01-01\nh: 0x1F\nu: 1_000\nq: '007'\nt: 10:30\n")
    assert doc.data == {"d": "2026-01-01", "h": 31, "u": 1000, "q": "007", "t": "10:30"}


def test_bool_and_null_keys_stay_text():
    doc = load("yes: 1\nno: 2\n~: 3\non: 4\n")
    assert doc.data == {"yes": 1, "no": 2, "~": 3, "on": 4}
    assert doc.mark(("no",), key=True) == (2, 1)


def test_empty_and_comment_only_documents_are_none():
    assert load("").data is None
    assert load("# just a comment\n").data is None


def test_top_level_list_and_scalar():
    assert load("- a\n- b\n").data == ["a", "b"]
    assert load("hello\n").data == "hello"


def test_unknown_tags_do_not_construct_objects():
    doc = load("a: !!python/object/apply:os.system [echo hi]\nb: !custom x\n")
    assert doc.data == {"a": ["echo hi"], "b": "x"}


# --- rejected input ---

def test_syntax_error_line_and_context():
    with pytest.raises(YamlProblem) as info:
        load("a: 1\nb: [1, 2\nc: 3\n")
    p = info.value.problem
    assert (p.line, p.code) == (3, "yaml-syntax")
    assert "starts at line 2" in p.message


def test_mapping_value_in_plain_scalar():
    assert problem("id: x\ntitle: en: Welcome\n") == (2, 10, "yaml-syntax")


def test_two_documents_are_rejected():
    assert problem("a: 1\n---\nb: 2\n")[2] == "yaml-syntax"


def test_duplicate_key_reports_the_second_and_names_the_first():
    with pytest.raises(YamlProblem) as info:
        load("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    p = info.value.problem
    assert (p.line, p.col, p.code) == (5, 3, "yaml-duplicate-key")
    assert "'c'" in p.message and "first at line 3" in p.message


def test_duplicate_key_in_flow_mapping():
    assert problem("t: {en: a, zh: b, en: c}\n") == (1, 19, "yaml-duplicate-key")


def test_same_key_in_different_mappings_is_fine():
    assert load("a: {x: 1}\nb: {x: 2}\n").data == {"a": {"x": 1}, "b": {"x": 2}}


def test_keys_that_differ_only_in_spelling_of_a_number_are_duplicates():
    assert problem("1: a\n0x1: b\n")[2] == "yaml-duplicate-key"


def test_merge_key_rejected():
    assert problem("base: &b {x: 1}\nother:\n  y: 2\n  <<: *b\n") == (4, 3, "yaml-merge-key")


def test_complex_key_rejected():
    assert problem("? [a, b]\n: 1\n")[2] == "yaml-bad-key"
    assert problem("{a: 1}: 2\n")[2] == "yaml-bad-key"


def test_tab_indentation_rejected():
    assert problem("a:\n\tb: 1\n") == (2, 1, "yaml-tab")
    assert problem("a:\n  b:\n  \t c: 1\n") == (3, 3, "yaml-tab")
    assert problem("a:\n  - x\n\t- y\n") == (3, 1, "yaml-tab")


def test_tab_inside_a_value_is_fine():
    doc = load('a: "x\ty"\nb:\n  - "p\tq"\nc: \'r\ts\'\nd: e\tf\n')
    assert doc.data == {"a": "x\ty", "b": ["p\tq"], "c": "r\ts", "d": "e\tf"}


def test_tab_after_content_is_fine():
    assert load("a: 1\t# comment\n").data == {"a": 1}


def test_aliases_are_expanded():
    doc = load("p: &p {en: hi, zh: 你好}\nq: *p\n")
    assert doc.data["q"] == {"en": "hi", "zh": "你好"}
    doc.data["q"]["en"] = "changed"  # each use is its own copy
    assert doc.data["p"]["en"] == "hi"


def test_alias_bomb_rejected_fast():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    line, _, code = problem("\n".join(lines) + "\n")
    assert code == "yaml-too-complex" and line == 1
    assert time.monotonic() - start < 5


def test_alias_budget_counts_every_expanded_value(monkeypatch):
    text = "a: &a [1, 2, 3]\nb: *a\nc: *a\n"  # 1 mapping + 3 lists of 3 = 13 values
    monkeypatch.setattr(yamlsafe, "MAX_NODES", 13)
    assert load(text).data["c"] == [1, 2, 3]
    monkeypatch.setattr(yamlsafe, "MAX_NODES", 12)
    assert problem(text)[2] == "yaml-too-complex"


def test_many_plain_values_also_hit_the_budget(monkeypatch):
    monkeypatch.setattr(yamlsafe, "MAX_NODES", 100)
    assert problem("a: [" + ", ".join(["1"] * 150) + "]\n")[2] == "yaml-too-complex"


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a [1, {b: [*a]}]\n"])
def test_recursive_alias_rejected(text):
    assert problem(text) == (1, 4, "yaml-recursive")


def test_deep_nesting_rejected_without_recursion_error():
    n = MAX_DEPTH - 1  # `a:` holds the first level
    value = load("a: " + "[" * n + "]" * n + "\n").data["a"]
    for _ in range(n - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []
    for n in (MAX_DEPTH, 500, 990):
        line, _, code = problem("a: " + "[" * n + "]" * n + "\n")
        assert (line, code) == (1, "yaml-too-deep")
    block = "".join("  " * i + f"k{i}:\n" for i in range(900)) + "  " * 900 + "v\n"
    assert problem(block)[2] == "yaml-too-deep"


def test_nesting_deeper_than_libyaml_allows_is_a_syntax_error():
    assert problem("a: " + "[" * 1200 + "]" * 1200 + "\n")[2] == "yaml-syntax"


# --- bytes: size and encoding ---

def test_oversize_rejected():
    raw = b"a: " + b"x" * MAX_BYTES + b"\n"
    assert problem(raw) == (1, 1, "yaml-too-large")


def test_exactly_the_limit_is_fine():
    raw = b"a: " + b"x" * (MAX_BYTES - 4) + b"\n"
    assert len(raw) == MAX_BYTES
    assert len(load(raw).data["a"]) == MAX_BYTES - 4


def test_non_utf8_located_by_line_and_character_column():
    assert problem(b"a: 1\nb: caf\xe9\n") == (2, 7, "yaml-not-utf8")
    # characters, not bytes: the Chinese text before the bad byte is 3 bytes a character
    assert problem("t: 欢迎\n".encode() + "zh: 你好".encode() + b"\xff\n") == (2, 7, "yaml-not-utf8")
    assert problem(b"\xfe\xff") == (1, 1, "yaml-not-utf8")


def test_truncated_utf8_sequence():
    line, col, code = problem("a: 你".encode()[:-1] + b"\n")
    assert (line, col, code) == (1, 4, "yaml-not-utf8")


def test_bom_is_skipped_and_marks_are_unchanged():
    doc = load(b"\xef\xbb\xbfid: demo\nx: 1\n")
    assert doc.data == {"id": "demo", "x": 1}
    assert doc.mark(("id",)) == (1, 5)


def test_utf16_is_rejected_not_misread():
    assert problem("a: 1\n".encode("utf-16"))[2] == "yaml-not-utf8"


# --- files ---

def test_load_file(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\n")
    doc = load_file(str(path))
    assert (doc.path, doc.data) == (str(path), {"a": 1})


def test_load_file_missing(tmp_path):
    with pytest.raises(YamlProblem) as info:
        load_file(str(tmp_path / "nope.yaml"))
    assert info.value.problem.code == "file-unreadable"


def test_load_file_oversize_reads_only_what_it_needs(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * (3 * MAX_BYTES) + b"\n")
    with pytest.raises(YamlProblem) as info:
        load_file(str(path))
    p = info.value.problem
    assert (p.path, p.line, p.code) == (str(path), 1, "yaml-too-large")


def test_problem_str_is_path_line_col_code_message():
    with pytest.raises(YamlProblem) as info:
        load("a: 1\na: 2\n")
    assert str(info.value) == "t.yaml:2:1: yaml-duplicate-key: duplicate key 'a' (first at line 1)"
