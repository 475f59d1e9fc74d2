"""Answer metrics in every script: ROUGE-L, exact match, token F1 against hand counts."""

from __future__ import annotations

import pytest
from nltk.stem import porter
from rouge_score.tokenize import tokenize as rouge_tokenize

from simulator.training.text_metrics import (
    ScriptTokenizer,
    answer_tokens,
    exact_match,
    rouge_l,
    token_f1,
)

ENGLISH = [
    "The Panthers' defense gave up just 308 points, ranking sixth!",
    "Don't stop running_fast: it's 3.5 km to the stadium.",
    "yes, the treatments were effective in 12 of 20 patients",
]


@pytest.mark.parametrize("text", ENGLISH)
def test_english_tokenises_exactly_as_rouge_score_does(text):
    assert ScriptTokenizer().tokenize(text) == rouge_tokenize(text, porter.PorterStemmer())


def test_non_latin_words_are_kept():
    assert ScriptTokenizer().tokenize("Über München") == ["über", "münchen"]
    assert ScriptTokenizer().tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert ScriptTokenizer().tokenize("Привет, мир") == ["привет", "мир"]
    # no spaces between words: one token per grapheme (a Thai vowel mark stays on its letter)
    assert ScriptTokenizer().tokenize("กินข้าว") == ["กิ", "น", "ข้", "า", "ว"]
    assert ScriptTokenizer().tokenize("北京2008年") == ["北", "京", "2008", "年"]


def test_rouge_l_of_exact_and_partial_answers_in_any_script():
    references = ["नई दिल्ली", "กรุงเทพมหานคร", "北京大学", "Denver Broncos"]
    assert rouge_l(references, references) == [1.0, 1.0, 1.0, 1.0]
    # Thai: the answer is the first 6 of the reference's 12 graphemes: P = 1, R = 1/2, F = 2/3
    assert len(ScriptTokenizer().tokenize("กรุงเทพมหานคร")) == 12
    assert rouge_l(["กรุงเทพมหานคร"], ["กรุงเทพ"]) == [pytest.approx(2 / 3)]
    assert rouge_l(["the Denver Broncos"], ["Broncos"]) == [
        pytest.approx(2 * 1 * (1 / 3) / (4 / 3))
    ]


def test_exact_match_and_f1_follow_squad():
    assert answer_tokens("The  Denver Broncos!") == ["denver", "broncos"]
    assert exact_match("Denver Broncos", "the denver broncos.") == 1.0
    assert exact_match("Denver Broncos", "Broncos") == 0.0
    # reference 2 tokens, answer 3 tokens, 2 in common: P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos", "Denver Broncos won") == pytest.approx(0.8)
    assert token_f1("नई दिल्ली", "दिल्ली") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("a", "Denver") == 0.0
