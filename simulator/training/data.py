"""Data sets for real training: load, hold out a validation split, tokenise once.

Sources: the embedded synthetic task, local JSONL/CSV files, PubMedQA's native `ori_pqal.json`
and SQuAD v1 JSON files (XQuAD: one file per language). The synthetic task is made up by this
module, not natural language: short texts of common filler words in which a few rare keywords
decide the label, with topics that skew both style and label. It exists so the default scenario
runs offline and so token importance matters (a client that never sees a class's keywords cannot
learn that class).

Every random choice comes from the "data" seed scope (0 generation, 1 split, 3 subset), so a
data set depends only on the spec and the root seed, and every method arm sees the same one. Bad
input raises `DataError` naming the file, the line or record, and the fix.

Instruction data (causal LM with a prompt and a response per example): JSONL/CSV with
`data.prompt` and `data.response` columns; PubMedQA as a Fed-Med-style instruction set (question
and contexts -> the decision word, then the long answer); SQuAD files as QA instructions
(context and question -> the first answer's text, `TextData.qa`); the synthetic task as an
instruction set (which keyword class does this text name -> "The answer is <class word>."). The
prompt is wrapped in the tokenizer's chat template when it has one (else "<prompt>\nAnswer: "),
the response ends with EOS, and only response tokens are loss targets (`Tokens.targets`). A
prompt line that starts with "Context: " or "Abstract: " (`CONTEXT_LINE`; PubMedQA's template
has one) is its context, the only part ever cut: when an example is longer than seq_len, the
context loses tokens from its middle (its first and last words stay), so the instruction, the
question and the response are kept whole. On QA data the dropped block moves off the answer span
(to just before or after it, whichever is nearer the middle) so the answer survives the cut
whenever it fits. An example that does not fit even with its context gone raises `DataError`
naming it and the seq_len it needs.
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import io
import itertools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simulator.errors import DataError, located
from simulator.scenario import DataSpec, FileData, PubMedQAData, SquadData, SyntheticData
from simulator.seeds import rng
from simulator.textfile import read_text
from simulator.training.partition import largest_remainders

log = logging.getLogger(__name__)

TASKS = ("classification", "causal_lm")
PUBMEDQA_LABELS = ("yes", "no", "maybe")
UNKNOWN_GROUP = "unknown"  # metadata value for a row whose group field is null or empty
_PUBMEDQA_FIX = "use PubMedQA's ori_pqal.json as published"
TOPIC_AFFINITY = 0.7  # chance that a synthetic example's topic is its label's home topic

# Every word is a single wordpiece of the BERT uncased vocabulary (tests check it), so a
# keyword is exactly one token and token-level policies see it as one unit.
_FILLER_TEXT = """
    the of and to in a is that for it as was with be by on not he i this are or his from at
    which but have an had they you were their one all we can her has there been if more when will
    would who so no she other its may these two about than into them some could him any only time
    new also then do what out up first most like over such our after year made well many must
    those just where through before back way even because did each own much people here same work
    both between long under never good still very might day down should life while being last
    great old world off part three place since used around without again know take another came
    every make high few get small go us always however against end often large home number
    thought things need think yet state second seen whole took left side went given looked
    something nothing set perhaps right once until whether upon less across along already within
    among became others although enough almost ever toward several rather least ago thus early
    later away far near quite beneath whom shall themselves per via onto despite"""
_KEYWORDS_TEXT = """
    penguin badger falcon otter beaver lobster oyster squid heron raven sparrow turtle lizard
    dolphin panther leopard jaguar gorilla camel donkey granite marble quartz copper nickel cobalt
    zinc basalt cinnamon ginger garlic mustard pepper vanilla almond walnut peanut cherry plum peach
    mango lemon lime olive violin cello flute trumpet harp guitar piano drum banjo accordion
    clarinet saxophone tuba oboe anchor compass lantern ladder hammer shovel kettle bucket blanket
    pillow carpet curtain mirror candle jasmine lily orchid daisy lavender cactus bamboo maple oak
    cedar pine willow birch ivy fern moss pearl ruby emerald sapphire diamond amber ivory saturn
    jupiter mars venus neptune pluto mercury comet meteor nebula glacier volcano canyon lagoon
    marsh prairie desert jungle reef harbor chimney cathedral castle fortress pyramid tavern bakery
    dragon unicorn wizard goblin troll phoenix pirate knight parrot owl eagle swan"""
FILLER = tuple(_FILLER_TEXT.split())
KEYWORDS = tuple(_KEYWORDS_TEXT.split())
_ZIPF = 1.0 / np.arange(1, len(FILLER) + 1)
_ZIPF /= _ZIPF.sum()


@dataclass(frozen=True)
class TextData:
    """A loaded data set with its split; indices into `texts` are the currency downstream."""

    source: str  # file path, or "synthetic"
    texts: list[str]
    labels: np.ndarray | None  # int64 class ids; None for causal LM text
    label_names: tuple[str, ...]  # () for causal LM
    groups: np.ndarray | None  # int64 metadata category per example, or None
    group_names: tuple[str, ...]
    train: np.ndarray  # sorted int64 indices of the training split
    validation: np.ndarray  # sorted int64 held-out indices (an eval_samples sample)
    prompts: list[str] | None = None  # instruction data: texts are then the responses
    # per validation index, its row in the evaluation source (the eval_path file's data rows
    # from 0, else the data set's examples): what the manifest records as evaluated
    eval_rows: np.ndarray | None = None
    # question answering (SQuAD files): responses are answer spans, scored as QA by evaluation
    qa: bool = False
    # QA: int64 [N, 2], each answer's [start, end) characters in its prompt, kept by truncation
    answer_spans: np.ndarray | None = None

    def fingerprint(self) -> str:
        """A stable hash of texts, prompts, labels and answer spans, so equal data shares one
        token cache entry."""
        digest = hashlib.sha256(json.dumps([self.texts, self.prompts]).encode())
        for array in (self.labels, self.answer_spans):
            if array is not None:
                digest.update(array.astype("<i8").tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Tokens:
    """Every example tokenised once; callers index rows by client or validation indices."""

    input_ids: torch.Tensor  # int64 [N, L], right-padded
    attention_mask: torch.Tensor  # int64 [N, L]
    labels: torch.Tensor | None  # int64 [N]; None for causal LM
    targets: torch.Tensor | None = None  # int64 [N, L]: 1 where a token is a loss target
    prompt_lengths: torch.Tensor | None = None  # int64 [N]: prompt tokens leading each row


@dataclass(frozen=True)
class _Raw:
    """Rows as read from a file, with where each came from for error messages."""

    texts: list[str]
    labels: list[str] | None
    groups: list[str] | None
    where: list[str]  # "line 17", "record 21645374"
    prompts: list[str] | None = None
    spans: list[tuple[int, int]] | None = None  # QA: the answer's characters in the prompt
    units: list[str] | None = None  # rows held out together (a SQuAD article)


def load_data(spec: DataSpec, task: str, seed: int) -> TextData:
    """Load (or generate) a data set, subset it to max_samples and split off validation."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if isinstance(spec, SyntheticData):
        texts, labels, groups = _synthetic(spec, seed)
        label_names = tuple(f"class{c}" for c in range(spec.classes))
        group_names = tuple(f"topic{t}" for t in range(spec.topics))
        named = (labels, label_names), (groups, group_names)
        prompts = None
        if task == "causal_lm":
            prompts = [SYNTHETIC_QUESTION.format(text=text) for text in texts]
            texts = [SYNTHETIC_ANSWER.format(word=ANSWER_WORDS[c]) for c in labels]
        return _finish(spec, "synthetic", texts, *named, task, seed, prompts)
    raw = _read(spec, task)
    held_out = 0
    source = _source(spec.path)
    if spec.eval_path is not None:  # appended after the training rows, held out as they are
        _refuse_training_file(spec.path, spec.eval_path)
        extra = _read(spec.model_copy(update={"path": spec.eval_path}), task)
        prefix = "" if isinstance(spec, SquadData) else f"{spec.eval_path}: "  # names its file
        raw, held_out = _concat(raw, extra, prefix), len(extra.texts)
    declared = _declared(spec, source)
    labels = None if raw.labels is None else _encode(raw.labels, declared, raw.where, source)
    groups = None if raw.groups is None else _encode(raw.groups, None, raw.where, source)
    named = (labels, groups, task, seed, raw.prompts, held_out)
    return _finish(spec, source, raw.texts, *named, raw.units, raw.spans)


def _source(path: str | list[str]) -> str:
    """What messages and the manifest call the data: its file, or its files."""
    return path if isinstance(path, str) else ", ".join(path)


def _refuse_training_file(paths: str | list[str], eval_paths: str | list[str]) -> None:
    """An eval_path that is a training file (or a byte-identical copy) would score the model
    on the rows it trains on; a file that cannot be read is reported when it is read."""
    listed = [paths] if isinstance(paths, str) else paths
    for eval_path in [eval_paths] if isinstance(eval_paths, str) else eval_paths:
        for path in listed:
            _refuse_same(path, eval_path)


def _refuse_same(path: str, eval_path: str) -> None:
    try:
        same = Path(path).samefile(eval_path) or filecmp.cmp(path, eval_path, shallow=False)
    except OSError:
        return
    if same:
        raise DataError(
            located(
                eval_path,
                "data.eval_path",
                f"is the training file data.path ({path}) or a copy of it, so the model would "
                "be evaluated on the rows it trains on",
                "give a separate held-out file, or drop eval_path to hold out data.validation "
                "of the training rows",
            )
        )


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_CHARS = 25  # a longer or larger number is kept as written (within Decimal's precision)


def _category(value: Any) -> str | None:
    """One spelling per label or group: JSON 1, "1", 1.0 and " 1 " are all "1" (a number by
    its exact decimal value, other text without surrounding spaces); None when empty."""
    text = json.dumps(value) if not isinstance(value, str | None) else value
    text = text.strip() if text else text
    if not text or len(text) > _MAX_CHARS or not _NUMBER.fullmatch(text):
        return text or None
    number = Decimal(text)
    if abs(number.adjusted()) > _MAX_CHARS:
        return text
    return "0" if number.is_zero() else format(number.normalize(), "f")


def _declared(spec: FileData | PubMedQAData | SquadData, source: str) -> tuple[str, ...] | None:
    """data.labels spelt as the rows' labels are (see _category); two names of one label, or
    an empty one, are refused. PubMedQA's are its decisions; SQuAD files have none."""
    if isinstance(spec, PubMedQAData):
        return PUBMEDQA_LABELS
    if isinstance(spec, SquadData) or spec.labels is None:
        return None
    seen: dict[str, str] = {}
    for name in spec.labels:
        category = _category(name)
        if category is None:
            raise DataError(located(source, "data.labels", "an empty label", "name every label"))
        if category in seen:
            problem = f"{seen[category]!r} and {name!r} name one label"
            raise DataError(located(source, "data.labels", problem, "list each label once"))
        seen[category] = name
    return tuple(seen)


def _read(spec: FileData | PubMedQAData | SquadData, task: str) -> _Raw:
    if isinstance(spec, PubMedQAData):
        return _read_pubmedqa(spec, task)
    if isinstance(spec, SquadData):
        return _read_squad(spec)
    return _read_file(spec, task)


def _concat(first: _Raw, second: _Raw, prefix: str) -> _Raw:
    """The rows of two files as one, the second's locations naming its file."""

    def both(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return None if a is None or b is None else a + b

    where = first.where + [prefix + w for w in second.where]
    return _Raw(
        first.texts + second.texts,
        both(first.labels, second.labels),
        both(first.groups, second.groups),
        where,
        both(first.prompts, second.prompts),
        both(first.spans, second.spans),
        both(first.units, second.units),
    )


SYNTHETIC_QUESTION = (
    "Which class does this text name by its keyword?\n{text}\nAnswer with the class word."
)
SYNTHETIC_ANSWER = "The answer is {word}."
ANSWER_WORDS = (
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white",
    "silver", "golden", "brown", "pink", "grey", "violet", "indigo", "crimson",
)  # fmt: skip
# The abstract is the context (cut first when too long); the question comes last, next to the
# answer, and is never cut.
PUBMEDQA_PROMPT = (
    "Answer the biomedical question from the abstract. Start with yes, no or maybe, then "
    "explain.\nAbstract: {contexts}\nQuestion: {question}"
)


def _synthetic(spec: SyntheticData, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Generate the keyword task: texts, labels and topics, vectorised over all word slots."""
    gen = rng(seed, "data", 0)
    n, classes, topics, per_class = spec.samples, spec.classes, spec.topics, spec.keywords_per_class
    labels = gen.integers(classes, size=n)
    home = gen.random(n) < TOPIC_AFFINITY
    groups = np.where(home, labels % topics, gen.integers(topics, size=n))
    distract = gen.random(n) < spec.distractor_rate
    n_true = np.where(distract, 2, gen.integers(1, 3, size=n))  # 2 vs 1 keeps the majority
    other = (labels + gen.integers(1, classes, size=n)) % classes
    lengths = gen.integers(spec.words[0], spec.words[1] + 1, size=n) + n_true + distract
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(n), lengths)
    # Filler: a Zipf rank, rotated by the topic so each topic favours its own slice (style).
    offset = groups * len(FILLER) // topics
    words = (gen.choice(len(FILLER), size=owner.size, p=_ZIPF) + offset[owner]) % len(FILLER)
    # Keywords take the first n_true (+1 distractor) slots of a random order within each text.
    order = np.lexsort((gen.random(owner.size), owner))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - starts[owner[order]]
    slots = rank < (n_true + distract)[owner]
    cls = np.where(rank < n_true[owner], labels[owner], other[owner])[slots]
    words[slots] = len(FILLER) + cls * per_class + gen.integers(per_class, size=cls.size)
    vocab = np.array(FILLER + KEYWORDS, dtype=object)
    texts = [" ".join(row) for row in np.split(vocab[words], starts[1:])]
    return texts, labels.astype(np.int64), groups.astype(np.int64)


def _finish(
    spec: DataSpec,
    source: str,
    texts: list[str],
    labels: tuple[np.ndarray, tuple[str, ...]] | None,
    groups: tuple[np.ndarray, tuple[str, ...]] | None,
    task: str,
    seed: int,
    prompts: list[str] | None = None,
    held_out: int = 0,
    units: list[str] | None = None,
    spans: list[tuple[int, int]] | None = None,
) -> TextData:
    """Subset, check the labels and split: the steps every source shares. Causal LM keeps
    the labels of instruction data as metadata (to partition by), never as targets. The last
    `held_out` rows (an evaluation file) are the validation pool, and the others all train;
    otherwise a seeded `validation` fraction is the pool, whole `units` at a time when the rows
    have them. Either way the evaluated rows are a seeded sample of eval_samples from the pool
    (`_eval_sample`), the same for every arm. Rows with answer `spans` are QA data."""
    labels = None if task == "causal_lm" and prompts is None else labels
    n_train = len(texts) - held_out
    keep = _subset(n_train, spec.max_samples, seed)
    if held_out:
        keep = np.concatenate([keep, np.arange(n_train, len(texts))])
        train = np.arange(keep.size - held_out)
        pool = keep.size - held_out + rng(seed, "data", 4).permutation(held_out)
    else:
        unit_ids = None if units is None else np.unique(units, return_inverse=True)[1][keep]
        train, pool = _split(source, spec, keep.size, seed, unit_ids)
    label_ids = None if labels is None else labels[0][keep]
    strata = {"label": label_ids, "group": None if groups is None else groups[0][keep]}
    validation = _eval_sample(source, spec, pool, strata)
    if labels is not None and task == "classification":
        _check_labels(source, label_ids, labels[1], train, validation)
    return TextData(
        source=source,
        texts=[texts[i] for i in keep],
        labels=label_ids,
        label_names=() if labels is None else labels[1],
        groups=None if groups is None else groups[0][keep],
        group_names=() if groups is None else groups[1],
        train=train,
        validation=validation,
        prompts=None if prompts is None else [prompts[i] for i in keep],
        eval_rows=keep[validation] - (n_train if held_out else 0),
        qa=spans is not None,
        answer_spans=None if spans is None else np.asarray(spans, np.int64).reshape(-1, 2)[keep],
    )


def _subset(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """A seeded random subset of max_samples examples, in their original order."""
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    return np.sort(rng(seed, "data", 3).choice(n, size=max_samples, replace=False))


def _split(
    source: str, spec: DataSpec, n: int, seed: int, units: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out: the sorted training indices and the held-out pool in a seeded random
    order; held-out examples beyond eval_samples are used by neither side. With `units` (a
    unit id per example) whole units are held out, in a seeded order, until they hold at least
    the validation fraction: a parallel corpus's translations of a held-out article never
    train."""
    n_val = round(n * spec.validation)
    gen = rng(seed, "data", 1)
    perm = gen.permutation(n)
    if units is not None and 1 <= n_val <= n - 1:
        sizes = np.bincount(units)
        order = gen.permutation(sizes.size)
        taken = order[: int(np.searchsorted(np.cumsum(sizes[order]), n_val)) + 1]
        held = np.isin(units[perm], taken)
        perm = np.concatenate([perm[held], perm[~held]])
        n_val = int(held.sum())
    if not 1 <= n_val <= n - 1:
        raise DataError(
            located(
                source,
                "data.validation",
                f"holding out {spec.validation} of {n} examples leaves {n_val} for validation "
                f"and {n - n_val} for training",
                "use more examples (data.max_samples) or a validation fraction that leaves "
                "at least one example on each side",
            )
        )
    return np.sort(perm[n_val:]), perm[:n_val]


def _eval_sample(
    source: str, spec: DataSpec, pool: np.ndarray, strata: dict[str, np.ndarray | None]
) -> np.ndarray:
    """The evaluated rows, sorted: the first eval_samples of the pool (in its seeded random
    order), or with `eval_stratify` each label or group's share of the pool (largest
    remainders), the first of each in pool order. Never the file's first rows, which a file
    sorted by class would make one class."""
    size = spec.eval_samples
    if size is None or size >= pool.size:
        return np.sort(pool)
    if spec.eval_stratify == "none":
        return np.sort(pool[:size])
    key = strata[spec.eval_stratify]
    if key is None:
        raise DataError(
            located(
                source,
                "data.eval_stratify",
                f"'{spec.eval_stratify}' needs {spec.eval_stratify}s, and this data set has none",
                "set eval_stratify = 'none', or name the column (data.label / data.group)",
            )
        )
    _, inverse, counts = np.unique(key[pool], return_inverse=True, return_counts=True)
    quota = largest_remainders(counts, size)
    rank = np.empty(pool.size, np.int64)  # each row's place among its stratum, in pool order
    order = np.argsort(inverse, kind="stable")
    rank[order] = np.arange(pool.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.sort(pool[rank < quota[inverse]])


def _check_labels(
    source: str, ids: np.ndarray, names: tuple[str, ...], train: np.ndarray, validation: np.ndarray
) -> None:
    """At least two classes, and none that only the validation split has."""
    seen = np.unique(ids)
    if seen.size < 2:
        raise DataError(
            located(
                source,
                None,
                "a classification data set needs at least 2 distinct labels; found only "
                + ", ".join(repr(names[i]) for i in seen),
                "check that data.label names the label column, or add examples of other classes",
            )
        )
    unseen = np.setdiff1d(ids[validation], ids[train])
    if unseen.size:
        raise DataError(
            located(
                source,
                "data.validation",
                "label(s) "
                + ", ".join(repr(names[i]) for i in unseen)
                + " appear in the validation split but never in training",
                "add training examples of that label, remove its rows, or change the seed "
                "or data.validation",
            )
        )


def _encode(
    values: list[str], declared: Sequence[str] | None, where: list[str], source: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """String categories -> int64 ids in declared order, or sorted order of the values seen."""
    names = tuple(declared) if declared is not None else tuple(sorted(set(values)))
    index = {name: i for i, name in enumerate(names)}
    ids = np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            located(
                source,
                where[row],
                f"label {values[row]!r} is not one of the declared labels {list(names)}",
                "add it to data.labels, or correct the row",
            )
        )
    return ids, names


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; undecodable bytes are reported by line and byte offset."""
    return read_text(path, DataError, "check data.path")


def _read_file(spec: FileData, task: str) -> _Raw:
    """A JSONL or CSV file: one example per row, columns named by the spec."""
    path = Path(spec.path)
    rows, where = _jsonl_rows(path) if spec.kind == "jsonl" else _csv_rows(path)
    if not rows:
        raise DataError(located(path, None, "the file has no rows", "add examples to it"))
    instruction = spec.prompt is not None
    # Instruction data keep a label column as metadata to partition by, where the file has one.
    keep_label = task == "classification" or (instruction and any(spec.label in r for r in rows))
    label = spec.label if keep_label else None
    text_column = spec.response if instruction else spec.text
    columns = {"text": None if instruction else spec.text, "label": label, "group": spec.group}
    columns |= {"prompt": spec.prompt, "response": spec.response} if instruction else {}
    if spec.kind == "csv":  # every row has the header's columns: check them once, on line 1
        for field, column in columns.items():
            if column is not None and column not in rows[0]:
                raise _missing(path, "line 1", rows[0], column, field)
    pairs = list(zip(rows, where, strict=True))
    texts = [
        _text(path, key, row, text_column, "response" if instruction else "text")
        for row, key in pairs
    ]
    prompts = (
        [_text(path, key, row, spec.prompt, "prompt") for row, key in pairs]
        if instruction
        else None
    )
    labels = None if label is None else _column(path, rows, where, label, "label")
    if labels is not None and None in labels:
        key = where[labels.index(None)]
        raise DataError(located(path, key, f"empty label in column {label!r}", "fill or remove it"))
    groups = None
    if spec.group is not None:
        values = _column(path, rows, where, spec.group, "group")
        groups = [UNKNOWN_GROUP if value is None else value for value in values]
    return _Raw(texts, labels, groups, where, prompts)


def _jsonl_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One JSON object per non-blank line."""
    rows, where = [], []
    for number, line in enumerate(_read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                located(
                    path,
                    f"line {number}",
                    f"not valid JSON ({err.msg} at column {err.colno})",
                    "write one JSON object per line",
                )
            ) from err
        if not isinstance(row, dict):
            raise DataError(
                located(
                    path,
                    f"line {number}",
                    f"expected a JSON object, got {type(row).__name__}",
                    'write one JSON object per line, e.g. {"text": "...", "label": "..."}',
                )
            )
        rows.append(row)
        where.append(f"line {number}")
    return rows, where


def _csv_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows under a header on line 1; a row's line is where it starts, as an editor shows."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    rows, where = [], []
    try:
        header = next(reader, [])
        start = reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != len(header):
                raise DataError(
                    located(
                        path,
                        f"line {start}",
                        f"{len(fields)} fields, but the header on line 1 has {len(header)}",
                        "quote fields that contain commas, and give every row every column",
                    )
                )
            if fields:
                rows.append(dict(zip(header, fields, strict=True)))
                where.append(f"line {start}")
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(located(path, f"line {reader.line_num}", f"malformed CSV ({err})")) from err
    return rows, where


def _text(path: Path, where: str, row: dict[str, Any], column: str, field: str = "text") -> str:
    if column not in row:
        raise _missing(path, where, row, column, field)
    value = row[column]
    if not isinstance(value, str) or not value.strip():
        problem = "empty text" if isinstance(value, str) else f"{type(value).__name__} text"
        raise DataError(
            located(path, where, f"{problem} in column {column!r}", "write a non-empty string")
        )
    return value


def _column(
    path: Path, rows: list[dict[str, Any]], where: list[str], column: str, field: str
) -> list[str | None]:
    """A label or group column as strings, one spelling per category (see _category)."""
    values: list[str | None] = []
    for row, key in zip(rows, where, strict=True):
        if column not in row:
            raise _missing(path, key, row, column, field)
        values.append(_category(row[column]))
    return values


def _missing(path: Path, where: str, row: dict[str, Any], column: str, field: str) -> DataError:
    return DataError(
        located(
            path,
            where,
            f"missing column {column!r} (columns: {', '.join(map(repr, row))})",
            f"add the column, or set data.{field} to one of the existing columns",
        )
    )


def _read_pubmedqa(spec: PubMedQAData, task: str = "classification") -> _Raw:
    """PubMedQA's ori_pqal.json: records keyed by PMID, in file order; for a causal LM an
    instruction set (question + contexts -> decision word, then the long answer)."""
    path = Path(spec.path)
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(
            located(
                path,
                f"line {err.lineno}",
                f"not valid JSON ({err.msg})",
                _PUBMEDQA_FIX,
            )
        ) from err
    if not isinstance(records, dict) or not records:
        raise DataError(
            located(
                path, None, "expected a non-empty JSON object keyed by PMID", "use ori_pqal.json"
            )
        )
    texts, labels, groups, where, prompts = [], [], [], [], []
    for pmid, record in records.items():
        key = f"record {pmid}"
        question, contexts, decision = _pubmedqa_fields(path, key, record)
        if task == "causal_lm":
            answer = record.get("LONG_ANSWER")
            prompts.append(PUBMEDQA_PROMPT.format(question=question, contexts=" ".join(contexts)))
            texts.append(
                f"{decision.capitalize()}. {answer}"
                if isinstance(answer, str)
                else decision.capitalize() + "."
            )
        else:
            texts.append(question + " " + " ".join(contexts))
        labels.append(decision)
        groups.append(_pubmedqa_group(record, spec.group))
        where.append(key)
    groups_or_none = None if spec.group == "none" else groups
    return _Raw(texts, labels, groups_or_none, where, prompts if task == "causal_lm" else None)


def _pubmedqa_fields(path: Path, key: str, record: Any) -> tuple[str, list[str], str]:
    record = record if isinstance(record, dict) else {}
    question, contexts = record.get("QUESTION"), record.get("CONTEXTS")
    decision = record.get("final_decision")
    problem = None
    if not isinstance(question, str) or not question.strip():
        problem = "missing QUESTION (a non-empty string)"
    elif not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        problem = "missing CONTEXTS (a list of strings)"
    elif decision not in PUBMEDQA_LABELS:
        problem = f"final_decision is {decision!r}, not one of 'yes', 'no', 'maybe'"
    if problem:
        raise DataError(located(path, key, problem, _PUBMEDQA_FIX))
    return question, contexts, decision


def _pubmedqa_group(record: dict[str, Any], group: str) -> str:
    """First MeSH term or publication year; absent metadata becomes 'unknown'."""
    if group == "mesh":
        meshes = record.get("MESHES")
        value = meshes[0] if isinstance(meshes, list) and meshes else None
    else:
        value = record.get("YEAR")
    return str(value) if value else UNKNOWN_GROUP


# The context is a line of its own (what truncation cuts); the question comes last, next to
# the answer, and is never cut.
SQUAD_PROMPT = (
    "Answer the question with a short span copied from the context.\n"
    "Context: {context}\nQuestion: {question}"
)
_SQUAD_CONTEXT_AT = SQUAD_PROMPT.index("{context}")
_SQUAD_FIX = (
    "give SQuAD v1 JSON: {'data': [{'title', 'paragraphs': [{'context', 'qas': [{'question', "
    "'answers': [{'text', 'answer_start'}]}]}]}]}"
)


class _QA(NamedTuple):
    """One question of a SQuAD file, as an instruction row."""

    prompt: str
    answer: str
    span: tuple[int, int]  # the answer's characters in the prompt
    group: str
    unit: str  # its article
    where: str


def _read_squad(spec: SquadData) -> _Raw:
    """Every question of every file, the first answer its response; the files' rows are
    taken in turn (each file's first question, then each file's second, ...) so that any head
    of the rows, such as the first held-out prompts that are generated, spans every group.
    Articles are the units held out together, by title, so the translations of a held-out
    article in a parallel set (XQuAD) are all held out."""
    per_file = [_squad_file(Path(path), _squad_group(spec, path)) for path in spec.path]
    rows = [row for turn in itertools.zip_longest(*per_file) for row in turn if row is not None]
    return _Raw(
        texts=[row.answer for row in rows],
        labels=None,
        groups=[row.group for row in rows],
        where=[row.where for row in rows],
        prompts=[row.prompt for row in rows],
        spans=[row.span for row in rows],
        units=[row.unit for row in rows],
    )


def _squad_group(spec: SquadData, path: str) -> str:
    """A file's group: declared in data.groups by file name, else the name's last
    dot-separated part before .json ("xquad.en.json" -> "en")."""
    name = Path(path).name
    if spec.groups is None:
        return name.removesuffix(".json").rsplit(".", 1)[-1]
    if name not in spec.groups:
        raise DataError(
            located(
                path,
                "data.groups",
                f"names no group for the file {name!r} (it names {sorted(spec.groups)})",
                f"add {name!r} = '<group>' to data.groups, or drop data.groups to take the "
                "group from the file name",
            )
        )
    return spec.groups[name]


def _squad_file(path: Path, group: str) -> list[_QA]:
    """A SQuAD v1 file's questions in file order, each checked (its answer where
    answer_start says)."""
    try:
        root = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        problem = f"not valid JSON ({err.msg})"
        raise DataError(located(path, f"line {err.lineno}", problem, _SQUAD_FIX)) from err
    rows = []
    articles = _squad_field(path, "", root, "data", list)
    for a, article in enumerate(articles):
        paragraphs = _squad_field(path, f"data[{a}]", article, "paragraphs", list)
        title = article.get("title")
        unit = title if isinstance(title, str) and title else f"{path.name} data[{a}]"
        for p, paragraph in enumerate(paragraphs):
            key = f"data[{a}].paragraphs[{p}]"
            # one line, as a context line must be (a newline would end it); offsets unchanged
            context = _squad_field(path, key, paragraph, "context", str).replace("\n", " ")
            for q, qa in enumerate(_squad_field(path, key, paragraph, "qas", list)):
                at = f"{key}.qas[{q}]"
                question = _squad_field(path, at, qa, "question", str)
                answer = _squad_field(path, at, qa, "answers", list)[0]
                text = _squad_field(path, f"{at}.answers[0]", answer, "text", str)
                start = _squad_field(path, f"{at}.answers[0]", answer, "answer_start", int)
                if context[start : start + len(text)] != text:
                    raise DataError(
                        located(
                            path,
                            f"{at}.answers[0].answer_start",
                            f"{start} does not point at the answer {text!r} in the context",
                            "give the answer's character offset in the context (from 0)",
                        )
                    )
                prompt = SQUAD_PROMPT.format(context=context, question=question)
                begin = _SQUAD_CONTEXT_AT + start
                rows.append(_QA(prompt, text, (begin, begin + len(text)), group, unit, at))
    if not rows:
        raise DataError(
            located(path, "data", "holds no question", "add questions, or drop the file")
        )
    return [row._replace(where=f"{path.name}: {row.where}") for row in rows]


def _squad_field(path: Path, at: str, node: Any, key: str, kind: type) -> Any:
    """node[key], a non-empty value of the kind SQuAD v1 puts there, or a DataError naming
    its place."""
    value = node.get(key) if isinstance(node, dict) else None
    right = isinstance(value, kind) and not isinstance(value, bool)
    if right and (kind is int or value):
        return value
    where = f"{at}.{key}" if at else key
    problem = "missing" if value is None else f"a {type(value).__name__} {value!r:.40}"
    fix = _SQUAD_FIX
    if key == "answers" and value == []:
        problem, fix = "empty (a SQuAD v2 unanswerable question)", "remove unanswerable questions"
    raise DataError(located(path, where, f"{problem}, expected a non-empty {kind.__name__}", fix))


_TOKEN_CACHE: dict[tuple[str, str, int], Tokens] = {}


def tokenize(data: TextData, tokenizer: Any, seq_len: int) -> Tokens:
    """Tokenise every example once per (data, tokenizer, seq_len); arms and clients share it."""
    key = (data.fingerprint(), str(tokenizer.name_or_path), seq_len)
    if key not in _TOKEN_CACHE:
        _TOKEN_CACHE[key] = _encode_tokens(data, tokenizer, seq_len)
    return _TOKEN_CACHE[key]


def _encode_tokens(data: TextData, tokenizer: Any, seq_len: int) -> Tokens:
    """One batched tokenizer call, then right-padding with numpy (no pad token needed)."""
    if data.prompts is not None:
        return _encode_instructions(data, tokenizer, seq_len)
    ids = tokenizer(
        data.texts,
        truncation=True,
        max_length=seq_len,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    input_ids, mask = _right_pad(ids, pad_id(tokenizer))
    labels = None if data.labels is None else torch.from_numpy(data.labels.copy())
    return Tokens(torch.from_numpy(input_ids), torch.from_numpy(mask.astype(np.int64)), labels)


def prompt_text(tokenizer: Any, prompt: str) -> str:
    """A prompt as the model sees it: in the tokenizer's chat template, when it has one."""
    if getattr(tokenizer, "chat_template", None):
        message = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    return f"{prompt}\nAnswer: "


# A prompt line whose text after the label is the context: what truncation may cut.
CONTEXT_LINE = re.compile(r"^(?:Context|Abstract):( .*)$", re.MULTILINE)


def _prompt_parts(tokenizer: Any, prompt: str) -> tuple[str, str, str]:
    """(before, context, after) of the prompt as the model sees it; context is "" when the
    prompt has no context line."""
    text = prompt_text(tokenizer, prompt)
    found = CONTEXT_LINE.search(prompt)
    offset = text.find(prompt)
    if found is None or offset < 0:
        return text, "", ""
    start, end = offset + found.start(1), offset + found.end(1)
    return text[:start], text[start:end], text[end:]


@dataclass(frozen=True)
class Fitted:
    """Instruction rows fitted to seq_len, with what the fitting did to each example."""

    rows: list[list[int]]  # prompt then response token ids
    prompt_lengths: np.ndarray  # int64: prompt tokens of each row as kept
    full_lengths: np.ndarray  # int64: prompt tokens before any cut
    cut: np.ndarray  # bool: the context lost tokens
    answer_kept: np.ndarray | None  # bool, QA data: the answer span is whole in the kept context


def fit_instructions(data: TextData, tokenizer: Any, seq_len: int) -> Fitted:
    """Prompt and response tokens side by side, a long example's context cut (see the module
    docstring)."""
    assert data.prompts is not None
    parts = [_prompt_parts(tokenizer, p) for p in data.prompts]
    spans = data.answer_spans if getattr(tokenizer, "is_fast", False) else None
    encoded = tokenizer(
        [x for part in parts for x in part],
        add_special_tokens=False,
        return_offsets_mapping=spans is not None,
    )
    pieces = encoded["input_ids"]
    eos = tokenizer.eos_token or ""
    responses = tokenizer([r + eos for r in data.texts], add_special_tokens=False)["input_ids"]
    rows, lengths, full, cut, kept = [], [], [], [], []
    for i, response in enumerate(responses):
        before, context, after = pieces[3 * i : 3 * i + 3]
        room = seq_len - len(before) - len(after) - len(response)
        if room < 0:
            raise DataError(
                located(
                    data.source,
                    f"example {i} (prompt {data.prompts[i][:60]!r}...)",
                    f"its instruction, question and response alone take {seq_len - room} "
                    f"tokens, more than seq_len = {seq_len} (only a context line is cut)",
                    f"set training.local.seq_len to at least {seq_len - room}, or shorten "
                    "the example",
                )
            )
        answer = None
        if spans is not None:
            found = CONTEXT_LINE.search(data.prompts[i])
            assert found is not None  # a QA prompt has its context line
            answer = _token_span(encoded["offset_mapping"][3 * i + 1], spans[i] - found.start(1))
        full.append(len(before) + len(context) + len(after))
        cut.append(len(context) > room)
        if cut[-1]:
            context, whole = _cut(context, room, answer)
            kept.append(whole)
        else:
            kept.append(True)
        rows.append(before + context + after + response)
        lengths.append(len(before) + len(context) + len(after))
    return Fitted(
        rows,
        np.array(lengths, np.int64),
        np.array(full, np.int64),
        np.array(cut, bool),
        None if spans is None else np.array(kept, bool),
    )


def _token_span(offsets: list[tuple[int, int]], chars: np.ndarray) -> tuple[int, int]:
    """The [first, last + 1) tokens of a context piece that overlap a character span."""
    bounds = np.asarray(offsets, np.int64).reshape(-1, 2)
    first = int(np.searchsorted(bounds[:, 1], chars[0], side="right"))
    return first, max(int(np.searchsorted(bounds[:, 0], chars[1], side="left")), first + 1)


def _cut(context: list[int], room: int, answer: tuple[int, int] | None) -> tuple[list[int], bool]:
    """The context in `room` tokens, and whether the answer (if any) is whole. One block of
    the excess is dropped from its middle; when that would cut the answer, from just before or
    after it (the nearer the middle that fits); when no one block can spare it, the context
    keeps a quarter of the spare room at each end and a window around the answer."""
    excess = len(context) - room
    start = room - room // 2  # the middle cut's first dropped token
    if answer is None or not (start < answer[1] and answer[0] < start + excess):
        return context[:start] + context[start + excess :], True
    first, end = answer
    moves = [s for s in (first - excess, end) if s >= 0 and s + excess <= len(context)]
    if moves:
        start = min(moves, key=lambda s: abs(s - start))
        return context[:start] + context[start + excess :], True
    spare = room - (end - first)
    if spare < 0:  # the answer alone is longer than the room: the plain middle cut
        return context[:start] + context[start + excess :], False
    edge = spare // 4
    window = room - 2 * edge  # the answer and the context around it
    low = min(max(edge, first - (window - (end - first)) // 2), len(context) - edge - window)
    head, tail = context[:edge], context[len(context) - edge :]
    return head + context[low : low + window] + tail, True


def _encode_instructions(data: TextData, tokenizer: Any, seq_len: int) -> Tokens:
    """Fitted rows right-padded; only the response's tokens are targets."""
    fitted = fit_instructions(data, tokenizer, seq_len)
    if fitted.cut.any():
        kept = (
            ""
            if fitted.answer_kept is None
            else (f"; the answer survives in {int(fitted.answer_kept[fitted.cut].sum())} of them")
        )
        log.info(
            "%s: %d of %d contexts cut to fit seq_len %d%s",
            data.source,
            int(fitted.cut.sum()),
            fitted.cut.size,
            seq_len,
            kept,
        )
    input_ids, mask = _right_pad(fitted.rows, pad_id(tokenizer))
    targets = mask & (np.arange(mask.shape[1]) >= fitted.prompt_lengths[:, None])
    return Tokens(
        torch.from_numpy(input_ids),
        torch.from_numpy(mask.astype(np.int64)),
        None,
        torch.from_numpy(targets.astype(np.int64)),
        torch.from_numpy(fitted.prompt_lengths),
    )


def _right_pad(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id rows as one right-padded int64 array and its boolean mask (numpy, no loop)."""
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    mask = np.arange(max(int(lengths.max()), 1)) < lengths[:, None]
    input_ids = np.full(mask.shape, pad, np.int64)
    input_ids[mask] = np.fromiter(itertools.chain.from_iterable(rows), np.int64, int(lengths.sum()))
    return input_ids, mask


def pad_id(tokenizer: Any) -> int:
    """The id that pads: the tokenizer's pad token, else its EOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
