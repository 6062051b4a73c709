"""Official VQA accuracy, with the exact semantics of the official evaluator.

Reference: ``vqaEval.py`` of the VQA API (GT-Vision-Lab/VQA, current master),
which OK-VQA and VQAv2 results are reported with. For one question with
answers ``a_1..a_n`` (n = 10 in the datasets) and prediction ``p``:

    acc(p) = (1/n) * sum_i min(1, #{j != i : a_j == p} / 3)

i.e. each annotator is left out in turn and the prediction scores
``min(1, matches among the others / 3)``; the scores are averaged.

Which strings are compared (``normalize="official"``), step by step:

1. ``p`` and every ``a_j``: ``"\\n"`` and ``"\\t"`` become spaces, then ``strip()``.
2. If the whitespace-cleaned answers are *not all identical*
   (``len(set(answers)) > 1``), ``p`` and every ``a_j`` go through
   :func:`process_punctuation` then :func:`process_digit_article`
   (lowercase, number words to digits, drop a/an/the, add apostrophes).
3. If they *are* all identical, nothing else is applied to either side: the
   comparison is exact and case sensitive, so ``"two"`` or ``"Yes"`` score 0
   against ten ``"2"`` or ten ``"yes"``.
4. Comparison is ``==`` on the resulting strings.

The official loop removes one answer *record* at a time (records carry unique
``answer_id``), so the leave-one-out is positional: duplicates are not removed
together. Counting ``m`` matches among ``n`` answers gives the closed form

    acc = [m * min(1, (m-1)/3) + (n-m) * min(1, m/3)] / n

so with ten answers 0, 1, 2, 3, 4+ matches score 0, 0.3, 0.6, 0.9, 1.0.
With a single answer the leave-one-out set is empty and the score is always 0.

``normalize="always"`` applies step 2 whatever the answers are. Some ports do
this; it is NOT the official metric and must not be reported as such.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

# --- Tables: these mirror the official evaluator (vqaEval.py) entry for entry,
# --- including its oddities (capitalised keys such as "Im" can never match
# --- because text is lowercased first; "somebody'd" maps to "somebodyd").
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

# Number words -> digits (official "manualMap"; only zero..ten and "none").
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Official punctuation list, in the official order. "." is handled by
# PERIOD_STRIP; ":", "'", "*", "#", "$", "%", "&", "|", "~", "^" are untouched.
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

# A comma between digits anywhere in the text ("1,000") switches every mark to
# "remove" rather than "replace by a space".
COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")

# Official periodStrip, verbatim pattern. "(?!<=\d)" is a negative LOOKAHEAD
# for the literal "<=" + digit (a typo for a lookbehind), so it never fails at
# a ".": the effective rule is "remove a period not followed by a digit".
# Hence "3.5" and ".5" keep their period, while "ok." and "5." lose it.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")

# The official call is periodStrip.sub("", text, re.UNICODE): the third
# positional argument of Pattern.sub is `count`, so at most int(re.UNICODE) == 32
# periods are removed per string.
PERIOD_STRIP_MAX_COUNT = int(re.UNICODE)

# Leave-one-out: this many matching other annotators give full credit.
FULL_CREDIT_MATCHES = 3

NORMALIZE_MODES = ("official", "always")


def clean_whitespace(text: str) -> str:
    """Newlines and tabs become spaces, then leading/trailing whitespace is stripped."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Official punctuation rule.

    For each mark in PUNCTUATION: if the *input* text has the mark next to a
    space (``mark + " "`` or ``" " + mark``), or has a comma between digits
    anywhere, every occurrence is removed; otherwise every occurrence becomes
    a space. Then periods not followed by a digit are removed (at most 32).
    """
    digit_comma = COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        # The test reads the original text, not the partly processed one.
        touches_space = (mark + " " in text) or (" " + mark in text)
        out = out.replace(mark, "" if touches_space or digit_comma else " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_MAX_COUNT)


def process_digit_article(text: str) -> str:
    """Lowercase, split on whitespace, map number words, drop articles, add apostrophes."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(text: str) -> str:
    """Whitespace cleaning, then the full official normalisation (punctuation, digits, ...)."""
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def _check_mode(normalize: str) -> None:
    if normalize not in NORMALIZE_MODES:
        raise ValueError(
            f"normalize={normalize!r} is not a VQA accuracy mode; choose one of {NORMALIZE_MODES}."
        )


def _check_answers(answers: Sequence[str]) -> None:
    if isinstance(answers, str):
        raise ValueError(
            "answers must be a list of annotator answers, not a single string; wrap it in a list."
        )
    if len(answers) == 0:
        raise ValueError("answers is empty; VQA accuracy needs at least one annotator answer.")


def compared_strings(
    prediction: str, answers: Sequence[str], normalize: str = "official"
) -> tuple[str, list[str]]:
    """The prediction and answers exactly as the evaluator compares them (see module doc)."""
    _check_mode(normalize)
    _check_answers(answers)
    if not isinstance(prediction, str):
        raise ValueError(f"prediction must be a string, got {type(prediction).__name__}.")
    pred = clean_whitespace(prediction)
    gts = [clean_whitespace(a) for a in answers]
    if normalize == "always" or len(set(gts)) > 1:
        pred = process_digit_article(process_punctuation(pred))
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
    return pred, gts


def leave_one_out_accuracy(hits: Sequence[bool]) -> float:
    """Mean over i of min(1, #{j != i : hits[j]} / 3); ``hits[j]`` = answer j matches.

    Summed in answer order, like the official loop, so results agree to the bit.
    """
    m = sum(bool(h) for h in hits)
    per_left_out = [min(1.0, (m - bool(h)) / FULL_CREDIT_MATCHES) for h in hits]
    return float(sum(per_left_out)) / len(per_left_out)


def vqa_accuracy(prediction: str, answers: Sequence[str], normalize: str = "official") -> float:
    """VQA accuracy in [0, 1] of one prediction against its annotator answers.

    ``normalize``: "official" (the official evaluator) or "always" (normalise
    even when all answers agree; non-official). See the module docstring.
    """
    pred, gts = compared_strings(prediction, answers, normalize)
    return leave_one_out_accuracy([a == pred for a in gts])


def vqa_accuracy_batch(
    predictions: Sequence[str],
    answers_lists: Sequence[Sequence[str]],
    normalize: str = "official",
) -> np.ndarray:
    """Per-question VQA accuracy, float64 array of shape (N,) with values in [0, 1]."""
    _check_mode(normalize)
    if len(predictions) != len(answers_lists):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(answers_lists)} answer lists; "
            "pass one answer list per prediction."
        )
    pairs = zip(predictions, answers_lists, strict=True)
    scores = [vqa_accuracy(pred, answers, normalize) for pred, answers in pairs]
    return np.asarray(scores, dtype=np.float64).reshape(len(scores))


def most_common_answer(answers: Sequence[str]) -> str:
    """The most frequent answer string (exact match); ties go to the one listed first."""
    _check_answers(answers)
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)
