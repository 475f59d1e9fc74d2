"""Answer metrics that work in every script: ROUGE-L, exact match and token F1.

rouge-score's default tokenizer keeps only `[a-z0-9]`, so every Hindi, Thai, Arabic, Chinese
or accented word vanishes (an exact Hindi answer scores ROUGE-L 0, "Über" becomes "ber").
`ScriptTokenizer` keeps every letter, combining mark and digit: a word is a run of them, and in
the scripts written without spaces between words (Thai, Lao, Khmer, Myanmar, Chinese, Japanese
kana) each grapheme is a token: character-level ROUGE, the usual choice where no word
segmenter ships. Lower-case ASCII words go through rouge-score's own Porter stemming (words of
more than 3 characters), so English text tokenises exactly as rouge-score's default does and
earlier English scores are unchanged. ROUGE-L itself is rouge-score's (Google's reference
implementation) with this tokenizer.

Exact match and token F1 follow the SQuAD v1.1 evaluation script (lower-case, no punctuation,
no English articles, whitespace collapsed; F1 over the bag of tokens), with this module's
tokens, so they too work in every script (as MLQA's multilingual variant of the script does).
"""

from __future__ import annotations

from collections import Counter

import regex
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenizers
from rouge_score.tokenize import tokenize as rouge_tokenize

WORD = regex.compile(r"[\p{L}\p{N}][\p{L}\p{M}\p{N}]*")
UNSPACED = regex.compile(
    r"[\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Han}\p{Hiragana}\p{Katakana}\p{Tibetan}]"
)
GRAPHEME = regex.compile(r"\X")
ASCII_WORD = regex.compile(r"[a-z0-9]+")
ARTICLES = frozenset(("a", "an", "the"))


class ScriptTokenizer(tokenizers.Tokenizer):
    """Words of any script (graphemes where words are not space-separated); see the module."""

    def __init__(self, stem: bool = True) -> None:
        self.stemmer = porter.PorterStemmer() if stem else None

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for word in WORD.findall(text.lower()):
            if ASCII_WORD.fullmatch(word):
                tokens += rouge_tokenize(word, self.stemmer)
            elif UNSPACED.search(word):
                tokens += _graphemes(word)
            else:
                tokens.append(word)
        return tokens


def _graphemes(word: str) -> list[str]:
    """Each grapheme of an unspaced script its own token; other runs inside the word stay whole
    (e.g. Latin digits or words glued to Chinese text)."""
    tokens: list[str] = []
    run = ""
    for grapheme in GRAPHEME.findall(word):
        if UNSPACED.match(grapheme):
            tokens += [run, grapheme] if run else [grapheme]
            run = ""
        else:
            run += grapheme
    return tokens + ([run] if run else [])


def rouge_l(references: list[str], answers: list[str]) -> list[float]:
    """ROUGE-L F-measure of each answer against its reference, in any script."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ScriptTokenizer(stem=True))
    return [
        scorer.score(ref, answer)["rougeL"].fmeasure
        for ref, answer in zip(references, answers, strict=True)
    ]


def answer_tokens(text: str) -> list[str]:
    """SQuAD's normalisation in any script: no punctuation, no English articles, unstemmed."""
    return [t for t in ScriptTokenizer(stem=False).tokenize(text) if t not in ARTICLES]


def exact_match(reference: str, answer: str) -> float:
    """1.0 when the normalised answer equals the normalised reference."""
    return float(answer_tokens(reference) == answer_tokens(answer))


def token_f1(reference: str, answer: str) -> float:
    """F1 over the bags of normalised tokens (SQuAD v1.1); 1.0 when both are empty."""
    ref, got = answer_tokens(reference), answer_tokens(answer)
    if not ref or not got:
        return float(ref == got)
    common = sum((Counter(ref) & Counter(got)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(ref)
    return 2 * precision * recall / (precision + recall)
