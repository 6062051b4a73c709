"""Hand-computed cases for the official VQA accuracy (icl_kit.data.vqa_accuracy).

Notation in comments: n answers, m of them equal to the prediction after the
official processing. Leave-one-out: the m left-out matching answers each see
m-1 matches, the n-m others see m matches, so
acc = [m * min(1, (m-1)/3) + (n-m) * min(1, m/3)] / n.
"""

import numpy as np
import pytest

from icl_kit.data.vqa_accuracy import (
    CONTRACTIONS,
    NORMALIZE_MODES,
    PUNCTUATION,
    compared_strings,
    leave_one_out_accuracy,
    most_common_answer,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_accuracy_batch,
)

TOL = 1e-12


def with_matches(answer: str, m: int, n: int = 10, other: str = "zzz") -> list[str]:
    """n answers of which the first m are `answer` and the rest `other`."""
    return [answer] * m + [other] * (n - m)


# --- leave-one-out partial credit -------------------------------------------------


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (0, 0.0),  # nobody agrees
        (1, 0.3),  # 1*min(1,0/3) + 9*min(1,1/3) = 0 + 3 = 3    -> 3/10
        (2, 0.6),  # 2*(1/3) + 8*(2/3) = 2/3 + 16/3 = 6          -> 6/10
        (3, 0.9),  # 3*(2/3) + 7*1 = 2 + 7 = 9                   -> 9/10
        (4, 1.0),  # 4*min(1,3/3) + 6*min(1,4/3) = 4 + 6 = 10    -> 1
        (7, 1.0),
        (10, 1.0),  # every left-out subset has 9 matches
    ],
)
def test_partial_credit_among_ten(m: int, expected: float) -> None:
    assert vqa_accuracy("cat", with_matches("cat", m)) == pytest.approx(expected, abs=TOL)


def test_one_match_is_point_three_wherever_it_is() -> None:
    for pos in range(10):
        answers = ["dog"] * 10
        answers[pos] = "cat"
        assert vqa_accuracy("cat", answers) == pytest.approx(0.3, abs=TOL)


def test_five_answers_generalised_leave_one_out() -> None:
    # n=5, m=1: 1*0 + 4*(1/3) = 4/3 -> 4/15
    assert vqa_accuracy("cat", with_matches("cat", 1, n=5)) == pytest.approx(4 / 15, abs=TOL)
    # n=5, m=2: 2*(1/3) + 3*(2/3) = 8/3 -> 8/15
    assert vqa_accuracy("cat", with_matches("cat", 2, n=5)) == pytest.approx(8 / 15, abs=TOL)


def test_one_and_two_answers() -> None:
    # n=1: the only left-out subset is empty -> 0 matches -> 0, even when equal.
    assert vqa_accuracy("cat", ["cat"]) == 0.0
    # n=2, m=2: each left-out subset holds 1 match -> 1/3 each -> 1/3
    assert vqa_accuracy("cat", ["cat", "cat"]) == pytest.approx(1 / 3, abs=TOL)


def test_leave_one_out_from_hits() -> None:
    # m=3 of 4: 3*(2/3) + 1*1 = 3 -> 3/4
    assert leave_one_out_accuracy([True, False, True, True]) == pytest.approx(0.75, abs=TOL)


# --- the identical-answers rule --------------------------------------------------


def test_identical_answers_are_compared_without_normalisation() -> None:
    # All ten "2": set size 1, so "two" is only whitespace-cleaned: "two" != "2" -> 0.
    assert vqa_accuracy("two", ["2"] * 10) == 0.0
    # Same for case and punctuation: "Yes" != "yes", "2." != "2".
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("2.", ["2"] * 10) == 0.0
    # The exact string still scores full credit.
    assert vqa_accuracy("2", ["2"] * 10) == 1.0


def test_always_mode_differs_on_identical_answers() -> None:
    # "always" normalises both sides: "two"->"2", "Yes"->"yes", "2."->"2"; m=10 -> 1.
    assert vqa_accuracy("two", ["2"] * 10, normalize="always") == 1.0
    assert vqa_accuracy("Yes", ["yes"] * 10, normalize="always") == 1.0
    assert vqa_accuracy("2.", ["2"] * 10, normalize="always") == 1.0


def test_set_check_runs_after_whitespace_cleaning() -> None:
    # "yes\n" strips to "yes": the ten answers become identical -> no normalisation,
    # so "Yes" scores 0 while " yes\t" (cleans to "yes") scores 1.
    answers = ["yes"] * 9 + ["yes\n"]
    assert compared_strings("Yes", answers) == ("Yes", ["yes"] * 10)
    assert vqa_accuracy("Yes", answers) == 0.0
    assert vqa_accuracy(" yes\t", answers) == 1.0


def test_case_difference_among_answers_triggers_normalisation() -> None:
    # "Yes" vs "yes" differ -> normalise all: ten "yes"; "YES" -> "yes"; m=10 -> 1.
    answers = ["yes"] * 9 + ["Yes"]
    assert vqa_accuracy("YES", answers) == 1.0


def test_always_equals_official_when_answers_disagree() -> None:
    answers = ["2"] * 3 + ["3"] * 7
    for pred in ["two", "2", "Three", "the 3", "4"]:
        assert vqa_accuracy(pred, answers, "always") == vqa_accuracy(pred, answers)


# --- digit words, articles, contractions ------------------------------------------


def test_number_words_become_digits() -> None:
    # answers disagree -> "two" -> "2"; m=5 of 10 -> 1
    assert vqa_accuracy("two", ["2"] * 5 + ["3"] * 5) == 1.0
    # answers "two" -> "2", prediction "2"; m=3 -> 0.9
    assert vqa_accuracy("2", ["two"] * 3 + ["3"] * 7) == pytest.approx(0.9, abs=TOL)
    # "none" -> "0"; m=2 -> 0.6
    assert vqa_accuracy("none", ["0"] * 2 + ["1"] * 8) == pytest.approx(0.6, abs=TOL)


def test_number_word_table_stops_at_ten() -> None:
    assert process_digit_article("Ten eleven") == "10 eleven"


def test_articles_are_dropped_as_words() -> None:
    # "a dog" -> "dog"; m=3 -> 0.9
    assert vqa_accuracy("a dog", ["dog"] * 3 + ["cat"] * 7) == pytest.approx(0.9, abs=TOL)
    assert process_digit_article("The cat and the hat") == "cat and hat"
    assert process_digit_article("an apple") == "apple"
    assert process_digit_article("theater") == "theater"  # word-level, not substring


def test_contractions_gain_apostrophes() -> None:
    # "Dont know" -> lower -> "dont" -> "don't"; m=4 -> 1
    assert vqa_accuracy("Dont know", ["don't know"] * 4 + ["no"] * 6) == 1.0
    assert process_digit_article("whats up") == "what's up"
    assert process_digit_article("oclock") == "o'clock"


def test_capitalised_contraction_keys_never_match() -> None:
    # Official table has "Im" -> "I'm", but text is lowercased first.
    assert "Im" in CONTRACTIONS
    assert process_digit_article("Im") == "im"


def test_whitespace_inside_collapses() -> None:
    assert process_digit_article("red   car\r") == "red car"


# --- punctuation -----------------------------------------------------------------


def test_punctuation_next_to_space_is_removed() -> None:
    assert process_punctuation("yes, sir") == "yes sir"  # ", " present -> remove ","
    # The test reads the original text: "-" touches a space once, so every "-" goes.
    assert process_punctuation("a-b - c") == "ab  c"
    # "/" (earlier in the list) becomes " " giving "a -b", but "-" is judged on the
    # original "a/-b", where it touches no space -> also " ": "a  b" (not "a b").
    assert process_punctuation("a/-b") == "a  b"


def test_punctuation_elsewhere_becomes_space() -> None:
    assert process_punctuation("black-and-white") == "black and white"
    # "!" with no neighbouring space -> " "; normalise then splits and joins.
    assert normalize_answer("The Two Dogs!") == "2 dogs"


def test_comma_between_digits_removes_all_marks() -> None:
    assert process_punctuation("1,000") == "1000"
    # "\d,\d" anywhere switches "-" from space to removal as well.
    assert process_punctuation("1,000-2,000") == "10002000"
    assert process_punctuation("1000-2000") == "1000 2000"
    # prediction "1,000" -> "1000"; m=2 -> 0.6
    assert vqa_accuracy("1,000", ["1000"] * 2 + ["500"] * 8) == pytest.approx(0.6, abs=TOL)


def test_unlisted_marks_are_kept() -> None:
    assert ":" not in PUNCTUATION and "'" not in PUNCTUATION
    assert process_punctuation("10:30") == "10:30"
    assert process_punctuation("don't") == "don't"


# --- the period rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.5", "3.5"),  # followed by a digit: kept
        (".5", ".5"),  # followed by a digit: kept
        ("ok.", "ok"),  # not followed by a digit: removed
        ("5.", "5"),  # "(?!<=\d)" is a lookahead, so a preceding digit does not protect it
        ("e.g.", "eg"),
    ],
)
def test_period_rule(text: str, expected: str) -> None:
    assert process_punctuation(text) == expected


def test_period_removal_is_capped_at_32() -> None:
    # Official passes re.UNICODE (== 32) as `count`: 40 periods -> 8 remain.
    assert process_punctuation("ok" + "." * 40) == "ok" + "." * 8


def test_decimal_prediction_scores() -> None:
    # "3.5" keeps its period and matches; "ok." -> "ok" matches "ok" (m=3 -> 0.9).
    assert vqa_accuracy("3.5", ["3.5"] * 4 + ["3"] * 6) == 1.0
    assert vqa_accuracy("ok.", ["ok"] * 3 + ["fine"] * 7) == pytest.approx(0.9, abs=TOL)


# --- empty predictions, newlines and tabs ----------------------------------------


def test_empty_prediction() -> None:
    assert vqa_accuracy("", ["yes"] * 10) == 0.0
    assert vqa_accuracy("\n\t ", ["yes"] * 5 + ["no"] * 5) == 0.0
    # The official rule compares "" like any string: 3 empty answers -> m=3 -> 0.9
    assert vqa_accuracy("", [""] * 3 + ["no"] * 7) == pytest.approx(0.9, abs=TOL)


def test_newlines_and_tabs_become_spaces() -> None:
    # "two\n" -> "two" -> "2"; m=4 -> 1
    assert vqa_accuracy("two\n", ["2"] * 4 + ["3"] * 6) == 1.0
    # Identical answers: only whitespace cleaning, "red\tcar" -> "red car" == "red car".
    assert vqa_accuracy("red\tcar", ["red car"] * 10) == 1.0
    # Inner newline with disagreeing answers: "red\ncar" -> "red car"; m=1 -> 0.3
    assert vqa_accuracy("red\ncar", with_matches("red car", 1)) == pytest.approx(0.3, abs=TOL)


# --- batch form, errors, most common answer ---------------------------------------


def test_batch_equals_per_item() -> None:
    preds = ["two", "Yes", "a dog", "", "1,000"]
    answers = [
        ["2"] * 10,
        ["yes"] * 9 + ["Yes"],
        ["dog"] * 3 + ["cat"] * 7,
        ["no"] * 10,
        ["1000"] * 2 + ["500"] * 8,
    ]
    for mode in NORMALIZE_MODES:
        batch = vqa_accuracy_batch(preds, answers, normalize=mode)
        assert batch.shape == (5,) and batch.dtype == np.float64
        per_item = [vqa_accuracy(p, a, mode) for p, a in zip(preds, answers, strict=True)]
        np.testing.assert_array_equal(batch, per_item)
    # two/"2"x10 -> 0; Yes -> yes, m=10 -> 1; dog m=3 -> 0.9; "" -> 0; 1000 m=2 -> 0.6
    expected = [0.0, 1.0, 0.9, 0.0, 0.6]
    np.testing.assert_allclose(vqa_accuracy_batch(preds, answers), expected, atol=TOL)


def test_empty_batch() -> None:
    assert vqa_accuracy_batch([], []).shape == (0,)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="official.*always"):
        vqa_accuracy("a", ["a"], normalize="lenient")
    with pytest.raises(ValueError, match="official.*always"):
        vqa_accuracy_batch(["a"], [["a"]], normalize="lenient")
    with pytest.raises(ValueError, match="2 predictions but 1 answer lists"):
        vqa_accuracy_batch(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="single string"):
        vqa_accuracy("a", "a")
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy("a", [])
    with pytest.raises(ValueError, match="prediction must be a string"):
        vqa_accuracy(None, ["a"])  # type: ignore[arg-type]


def test_most_common_answer() -> None:
    assert most_common_answer(["a", "b", "b", "c"]) == "b"
    assert most_common_answer(["y", "x", "x", "y"]) == "y"  # tie -> first listed
    assert most_common_answer(["x", "y", "y", "x"]) == "x"
    assert most_common_answer(["Yes", "yes", "yes"]) == "yes"  # exact strings
    with pytest.raises(ValueError, match="empty"):
        most_common_answer([])
