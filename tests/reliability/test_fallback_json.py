"""The fallback's streaming reading of a module's output (tools/fallback.py:
Lines finds the JSON as the builtin does, Scanner checks and repairs it),
run in this process. Scanner must take exactly what Python's json takes, fed
in blocks of any size, in bounded memory."""

import json
import random

import pytest

from helpers import load_fallback


@pytest.fixture(autouse=True)
def impl():
    """Unit tests of the fallback's own code: run once, not per implementation."""
    return "fallback"


FB = load_fallback()


def scan(data, sizes=None, watch=()):
    """Feeds `data` in blocks (of the sizes `sizes` draws, else whole):
    (the repaired text, the scanner) or the ValueError."""
    out = []
    s = FB.Scanner(out.append, watch)
    try:
        i = 0
        while i < len(data):
            n = sizes() if sizes else len(data)
            s.feed(data[i:i + n])
            i += n
        s.feed(b"", True)
    except ValueError as e:
        return e
    return b"".join(out), s


SEEDS = [
    '{"rc": 0, "x": NaN, "y": Infinity, "z": -Infinity, "big": 1e999, "n": -0.5e+3, "i": 12345678901234567890}',
    '{"a": [1, 2, {"b": [], "c": {}}], "s": "caf\\u00e9 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t",'
    ' "e": "\u00e9\u4e2d\U0001f600"}',
    '{"pair": "\\ud83d\\ude00", "t": true, "f": false, "n": null, "deep": [[[[[[1]]]]]]}',
    ' \n {"k" : "v" , "w":[ 1 ,2 ] } \r\n',
    '[1, "two", 3.0, {"four": 4}]',
    '"just a string"',
    '0',
    '{"warnings": ["w1"], "nested": {"warnings": "not this one"}, "failed": true}',
]
ALPHABET = '{}[]",:0123456789.eE+-tfrueals nNIinfy\\u\n\t\x01\x7f\u00e9'


def mutate(rng, text):
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(chars) + 1)
        op = rng.random()
        if op < 0.4 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op < 0.8:
            chars.insert(i, rng.choice(ALPHABET))
        elif chars:
            chars[min(i, len(chars) - 1)] = rng.choice(ALPHABET)
    return "".join(chars)


def python_takes(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_it_takes_exactly_what_pythons_json_takes_in_blocks_of_any_size():
    rng = random.Random(20261204)
    cases = list(SEEDS) + [mutate(rng, rng.choice(SEEDS)) for _ in range(6000)]
    taken = 0
    for text in cases:
        data = text.encode("utf-8", "surrogatepass")
        whole = scan(data)
        assert isinstance(whole, tuple) == python_takes(text), (text, whole)
        # The same verdict and the same repaired text, whatever the blocks.
        blocky = scan(data, lambda: rng.randint(1, 7))
        assert type(blocky) is type(whole) and (not isinstance(whole, tuple) or blocky[0] == whole[0]), text
        if isinstance(whole, tuple):
            taken += 1
            if not whole[1].replaced:
                assert whole[0] == data, "text that needs no repair passes unchanged"
    assert taken > 1000, "the mutations kept enough valid JSON to compare"


def test_nesting_of_any_depth_without_recursion():
    deep = b'{"d": ' + b"[" * 200000 + b"1" + b"]" * 200000 + b"}"
    assert isinstance(scan(deep, lambda: 65536), tuple)
    assert isinstance(scan(deep[:-2] + b"}"), ValueError)


def test_strings_that_are_not_utf8_are_repaired():
    data = b'{"a": "x\xffy", "b": "\\udcff", "c": "\\ud83d\\ude00", "d": "\\ud83d", "e": "\xc3\xa9\xe2\x82"}'
    for sizes in (None, lambda: 1, lambda: 3):
        text, s = scan(data, sizes)
        assert s.replaced == 4, text
        assert json.loads(text) == {"a": "x\ufffdy", "b": "\ufffd", "c": "\U0001f600", "d": "\ufffd",
                                    "e": "\u00e9\ufffd"}, text


def test_it_notes_the_top_level_members_it_watches():
    data = b'{"warnings": "old", "x": {"warnings": 1, "failed": false}, "warn\\u0069ngs": ["w"], "failed": true}'
    for sizes in (None, lambda: 1, lambda: 2):
        _, s = scan(data, sizes, watch=("warnings", "failed"))
        assert s.members == 4
        assert {k: data[a:b] for k, (a, b) in s.found.items()} == {"warnings": b'["w"]', "failed": b"true"}


@pytest.mark.parametrize("block", [1, 2, 3, FB.BLOCK])
def test_it_finds_the_json_as_the_builtin_does(tmp_path, block, monkeypatch):
    monkeypatch.setattr(FB, "BLOCK", block)

    def find(text):
        f = tmp_path / "out"
        f.write_bytes(text)
        with open(f, "rb") as r:
            at = FB.Lines(r)
        return at.start, at.end, (at.after if at.after is not None and at.after < at.pos else None)

    text = b'motd\nmore\n  {"a": 1,\n"b": 2}  \ntrailing\njunk\n'
    start, end, junk = find(text)
    assert text[start:end] == b'  {"a": 1,\n"b": 2}' and text[junk:] == b"trailing\njunk\n"
    assert find(b"{}") == (0, 2, None)
    assert find(b"{}\r\n") == (0, 2, None)
    assert find(b"{}\r\nx") == (0, 2, 4)
    assert find(b"} before\n{x}\n") == (9, 12, None), "a } line before the start is no end"
    assert find(b"no json")[0] is None
    assert find(b"{ open")[1] is None
    assert find(b"")[0] is None
