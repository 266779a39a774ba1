"""Rule-based filters (SELF-GUIDE section 2.3)."""

from __future__ import annotations

import math

import pytest

from selfguide.stages.generate.filters import (
    GREETINGS,
    DuplicateFilter,
    EmptyFilter,
    LengthBand,
    LengthFilter,
    NearDuplicateFilter,
    NoiseFilter,
    first_failure,
    length_band,
    shingles,
)


@pytest.mark.parametrize(("text", "reason"), [("", "empty"), ("   \n\t", "empty"), ("x", None), (" x ", None)])
def test_empty_filter(text, reason):
    assert EmptyFilter().reason(text) == reason


# -- length --------------------------------------------------------------------------------------------


def test_length_band_mean_plus_minus_two_population_sd():
    # lengths 4 and 8: mean 6, population sd 2 (the sample sd would be 2.83)
    assert length_band(["aaaa", "aaaaaaaa"], sigmas=2.0, min_spread=0.25) == LengthBand(2.0, 10.0)
    assert length_band(["aaaa", "aaaaaaaa"], sigmas=1.5, min_spread=0.0) == LengthBand(3.0, 9.0)


def test_length_band_three_lengths():
    # lengths 2, 4, 6: mean 4, population sd sqrt(8/3)
    band = length_band(["ab", "abcd", "abcdef"], sigmas=2.0, min_spread=0.25)
    half = 2 * math.sqrt(8 / 3)
    assert band.low == pytest.approx(4 - half)
    assert band.high == pytest.approx(4 + half)


def test_length_band_lower_bound_is_clamped_at_zero():
    # lengths 1 and 9: mean 5, sd 4, mean - 2 sd = -3
    assert length_band(["a", "a" * 9], sigmas=2.0, min_spread=0.25) == LengthBand(0.0, 13.0)


def test_identical_lengths_still_admit_near_lengths():
    # sd = 0: the half-width is min_spread * mean = 0.25 * 8 = 2
    band = length_band(["abcdefgh"] * 3, sigmas=2.0, min_spread=0.25)
    assert band == LengthBand(6.0, 10.0)
    f = LengthFilter(band)
    assert [f.reason("x" * n) for n in (5, 6, 8, 10, 11)] == ["too_short", None, None, None, "too_long"]


def test_min_spread_zero_with_identical_lengths_admits_only_that_length():
    f = LengthFilter(length_band(["abcd"] * 3, sigmas=2.0, min_spread=0.0))
    assert [f.reason("x" * n) for n in (3, 4, 5)] == ["too_short", None, "too_long"]


def test_length_filter_bounds_are_inclusive():
    f = LengthFilter(LengthBand(2.0, 10.0))
    assert f.name == "length"
    assert [f.reason("x" * n) for n in (0, 1, 2, 3, 9, 10, 11)] == [
        "too_short", "too_short", None, None, None, None, "too_long"]


def test_length_filter_with_fractional_band():
    f = LengthFilter(LengthBand(2.5, 7.5))
    assert [f.reason("x" * n) for n in (2, 3, 7, 8)] == ["too_short", None, None, "too_long"]


# -- noise ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("greeting", GREETINGS)
def test_every_paper_greeting_is_noise_in_any_case(greeting):
    f = NoiseFilter()
    assert f.reason(f"prefix {greeting} suffix") == "noise_term"
    assert f.reason(greeting.upper()) == "noise_term"
    assert f.reason(greeting.lower()) == "noise_term"


def test_paper_greeting_list():
    assert len(GREETINGS) == 14
    assert "Sure, I'd be happy to help!" in GREETINGS
    assert "I understand your question." in GREETINGS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[input]="another one"', "noise_term"),
        ("The [OUTPUT] is 3", "noise_term"),
        ("[Instruction] repeat", "noise_term"),
        ("Write the input and output in French.", None),  # the bare words are genuine task text
        ("A perfectly normal sentence.", None),
    ],
)
def test_prompt_markers_are_noise(text, reason):
    assert NoiseFilter().reason(text) == reason


def test_extra_terms_are_case_insensitive_and_never_leak_into_new_filters():
    first = NoiseFilter(["Banana", "as an AI"])
    assert first.reason("I like BANANA bread") == "noise_term"
    assert first.reason("As An Ai, I cannot") == "noise_term"
    second = NoiseFilter()
    assert second.reason("I like banana bread") is None
    assert second.reason("as an AI, I cannot") is None
    third = NoiseFilter(iter(["kiwi"]))  # any iterable, consumed once
    assert third.reason("kiwi") == "noise_term"
    assert third.reason("banana") is None
    assert NoiseFilter().reason("kiwi") is None


# -- duplicates ----------------------------------------------------------------------------------------


def test_duplicate_filter_ignores_whitespace_differences():
    f = DuplicateFilter()
    assert f.reason("red green blue") is None
    f.add("red green blue")
    assert f.reason("red green blue") == "duplicate"
    assert f.reason("  red\tgreen\n\nblue ") == "duplicate"
    assert f.reason("red green blue!") == "normalized_duplicate"  # punctuation around it makes no new input
    assert f.reason("redgreen blue") is None


def test_duplicate_filters_do_not_share_memory():
    a, b = DuplicateFilter(), DuplicateFilter()
    a.add("x")
    assert a.reason("x") == "duplicate"
    assert b.reason("x") is None


def test_shingles_are_case_and_whitespace_folded_trigrams():
    assert shingles("abcd") == {"abc", "bcd"}
    assert shingles("AB  cd") == {"ab ", "b c", " cd"}
    assert shingles("ab") == {"ab"}  # shorter than a trigram: the text itself


@pytest.mark.parametrize(
    ("threshold", "reason"),
    [(0.3, "near_duplicate"), (1 / 3, "near_duplicate"), (0.34, None), (0.9, None)],
)
def test_near_duplicate_threshold(threshold, reason):
    # shingles: abcd -> {abc, bcd}; abce -> {abc, bce}; Jaccard = 1 / 3
    f = NearDuplicateFilter(threshold)
    f.add("abcd")
    assert f.reason("abce") == reason


def test_near_duplicate_of_any_kept_text():
    f = NearDuplicateFilter(0.9)
    assert f.reason("sun moon stars") is None  # nothing kept yet
    f.add("completely different")
    f.add("sun moon star")
    # 11 of the 12 trigrams of "sun moon stars" are trigrams of "sun moon star": 11 / 12 >= 0.9
    assert f.reason("sun moon stars") == "near_duplicate"
    assert f.reason("SUN   moon star") == "near_duplicate"
    assert f.reason("rain and snow") is None


def test_first_failure_reports_the_first_filter_in_order():
    noise, length = NoiseFilter(), LengthFilter(LengthBand(1.0, 12.0))
    text = "Of course! this is much too long"
    assert first_failure([EmptyFilter(), length, noise], text) == ("length", "too_long")
    assert first_failure([EmptyFilter(), noise, length], text) == ("noise", "noise_term")
    assert first_failure([EmptyFilter(), length, noise], "  ") == ("empty", "empty")
    assert first_failure([EmptyFilter(), length, noise], "fine") is None
    assert first_failure([], "") is None
