"""[training]: surrogate or real training, its data, partition, LoRA and local steps."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from simulator import extras
from simulator.registry import validate_options
from simulator.scenario.fields import (
    MAX_COUNT,
    MAX_ROUNDS,
    MAX_SYNTHETIC_WORDS,
    Count,
    CountRange,
    Fraction,
    Megabytes,
    Model,
    NonNegFloat,
    OpenFraction,
    PositiveFloat,
    Slug,
    at_most,
    option_problems,
    ordered,
)
from simulator.training.partition import PARTITIONERS


class SurrogateTraining(Model):
    """Quality-vs-rounds model (see simulator/training/surrogate.py); no torch needed."""

    mode: Literal["surrogate"]
    metric: Slug = "accuracy"
    initial: Fraction = 0.3
    ceiling: Fraction = 0.9
    tau_rounds: Annotated[PositiveFloat, at_most(MAX_ROUNDS, "rounds")] = 20.0
    noise_sd: NonNegFloat = 0.0
    adapter_params: Annotated[int, Field(gt=0, le=10**13)] | None = None
    downlink_mb: Megabytes = 0.0
    samples_per_client: Count = 100

    @model_validator(mode="after")
    def _check(self) -> SurrogateTraining:
        if self.initial > self.ceiling:
            raise ValueError(f"initial ({self.initial}) exceeds ceiling ({self.ceiling})")
        return self


class DataCommon(Model):
    """What every data source shares: the held-out split and optional size caps."""

    validation: Annotated[float, Field(gt=0, lt=1)] = 0.2
    max_samples: Annotated[int, Field(gt=0)] | None = None
    eval_samples: Annotated[int, Field(gt=0)] | None = 512
    # a seeded random sample of eval_samples held-out rows; stratified keeps each label's or
    # group's share of the held-out rows
    eval_stratify: Literal["none", "label", "group"] = "none"


class SyntheticData(DataCommon):
    """The embedded task: filler text where a few rare keywords decide the label (data.py)."""

    kind: Literal["synthetic"]
    samples: Annotated[int, Field(ge=20, le=MAX_SYNTHETIC_WORDS)] = 4000
    classes: Annotated[int, Field(ge=2, le=16)] = 4
    topics: Annotated[int, Field(ge=1, le=16)] = 4
    keywords_per_class: Annotated[int, Field(ge=1, le=8)] = 3
    words: CountRange = (12, 24)
    distractor_rate: Fraction = 0.3

    @model_validator(mode="after")
    def _check(self) -> SyntheticData:
        ordered(self.words, "words")
        words = self.samples * (self.words[1] + self.keywords_per_class + 1)
        if words > MAX_SYNTHETIC_WORDS:
            raise ValueError(
                f"samples × words would generate up to {words:,} words, more than the "
                f"{MAX_SYNTHETIC_WORDS:,} (~10 GB) that fit in memory; lower samples or words"
            )
        return self


class FileData(DataCommon):
    """Local JSONL or CSV: a text column and (for classification) a label column; or, for a
    causal LM, prompt and response columns (instruction data: loss on the response only)."""

    kind: Literal["jsonl", "csv"]
    path: str
    text: str = "text"
    label: str | None = "label"
    group: str | None = None
    labels: list[str] | None = None
    prompt: str | None = None
    response: str | None = None
    eval_path: str | None = None  # a separate held-out file (same format and columns)

    @model_validator(mode="after")
    def _check(self) -> FileData:
        if (self.prompt is None) != (self.response is None):
            raise ValueError(
                "instruction data needs both prompt and response (their column names), "
                "e.g. prompt = 'prompt', response = 'response'"
            )
        return self


class PubMedQAData(DataCommon):
    """PubMedQA's native ori_pqal.json: question + contexts -> yes / no / maybe."""

    kind: Literal["pubmedqa"]
    path: str
    group: Literal["mesh", "year", "none"] = "mesh"
    eval_path: str | None = None  # a separate held-out file in the same format


class SquadData(DataCommon):
    """SQuAD v1 JSON files (XQuAD: one per language): context + question -> the first answer,
    as instruction data for a causal LM; each file's rows form one group (its language)."""

    kind: Literal["squad"]
    path: list[str]  # files or globs (relative to the scenario's folder), one group each
    # file name -> group; default the name's last dot-separated part ("xquad.en.json" -> "en")
    groups: dict[str, str] | None = None
    eval_path: list[str] | None = None  # separate held-out SQuAD files, grouped the same way

    @field_validator("path", "eval_path", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


DataSpec = Annotated[
    SyntheticData | FileData | PubMedQAData | SquadData, Field(discriminator="kind")
]


class Partition(Model):
    """How the training split is divided among clients (partition.py): a built-in kind or a
    user's `package.module:Class` partitioner, whose own options go in `options`."""

    kind: str = "dirichlet"
    by: Literal["label", "group"] = "label"
    alpha: PositiveFloat = 0.5
    shards_per_client: Count = 2
    size_sigma: NonNegFloat = 0.0
    min_samples: Count = 4
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _kind(self) -> Partition:
        cls = PARTITIONERS.resolve(self.kind)
        try:
            validate_options(cls, self.options)
        except ValidationError as exc:
            raise ValueError(f"partition.options: {option_problems(exc)}") from None
        return self


class Lora(Model):
    """LoRA through PEFT; target_modules None = PEFT's default for the architecture."""

    rank: Annotated[int, Field(gt=0, le=4096)] = 8
    alpha: PositiveFloat = 16.0
    dropout: OpenFraction = 0.0
    target_modules: list[str] | None = None


class LocalTraining(Model):
    """S local AdamW steps per client-round."""

    steps: Count = 10
    batch_size: Count = 8
    seq_len: Annotated[int, Field(ge=4, le=MAX_COUNT)] = 64
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegFloat = 0.0
    max_grad_norm: PositiveFloat | None = 1.0


class ExecutorOptions(Model):
    """Ray: which cluster, and what each actor asks of it (None: what it uses; executors.py)."""

    address: str | None = None  # an existing cluster, e.g. "10.0.0.5:6379"; else $RAY_ADDRESS
    num_cpus: NonNegFloat | None = None  # default training.threads
    num_gpus: NonNegFloat | None = None  # default 1 when the device is CUDA, else 0


class RealTraining(Model):
    """Real LoRA fine-tuning of a Hugging Face model at every client event."""

    mode: Literal["real"]
    model: str = "minilm"
    task: Literal["classification", "causal_lm"] = "classification"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    lora: Lora = Lora()
    data: DataSpec
    partition: Partition = Partition()
    local: LocalTraining = LocalTraining()
    executor: Literal["inline", "process", "ray"] = "inline"
    workers: Annotated[int, Field(gt=0, le=1024)] = 2
    executor_options: ExecutorOptions = ExecutorOptions()
    # torch intra-op threads in every process that does model math (the main process and each
    # worker): float results depend on it, so it is part of the run, never taken from the host
    threads: Annotated[int, Field(gt=0, le=256)] = 2
    eval_batch_size: Count = 64

    @model_validator(mode="after")
    def _check(self) -> RealTraining:
        extras.require("train", "training.mode = 'real'")
        if self.executor == "ray":
            extras.require("ray", "training.executor = 'ray'")
        if (
            self.task == "classification"
            and isinstance(self.data, FileData)
            and not self.data.label
        ):
            raise ValueError("classification needs data.label (the label column)")
        if self.executor != "ray" and self.executor_options != ExecutorOptions():
            raise ValueError("executor_options are Ray's: set executor = 'ray', or remove them")
        if isinstance(self.data, SquadData) and self.task != "causal_lm":
            raise ValueError(
                "squad data are question answering for task = 'causal_lm' (the answer is "
                "generated); set task = 'causal_lm'"
            )
        if self.partition.by == "label" and self.partition.kind != "iid":
            if isinstance(self.data, SquadData):
                raise ValueError(
                    "squad data have no labels to partition by: set partition.by = 'group' "
                    "(one group per file, e.g. a language) or partition.kind = 'iid'"
                )
            if (
                self.task == "causal_lm"
                and isinstance(self.data, FileData)
                and self.data.prompt is None
            ):
                raise ValueError(
                    "causal_lm plain text has no labels to partition by: set partition.kind = "
                    "'iid', partition.by = 'group' with data.group, or use instruction data "
                    "(data.prompt, data.response) with a data.label column"
                )
        if self.task == "classification" and isinstance(self.data, FileData) and self.data.prompt:
            raise ValueError(
                "data.prompt and data.response are instruction data for task = 'causal_lm'"
            )
        if self.partition.by == "group" and not _has_groups(self.data):
            raise ValueError(
                "partition.by = 'group' needs a metadata field: set data.group "
                "(jsonl/csv column, or pubmedqa 'mesh'/'year'), or use by = 'label'"
            )
        return self


def is_instruction(training: SurrogateTraining | RealTraining) -> bool:
    """Causal LM on prompt/response data (what generation metrics need)."""
    if not isinstance(training, RealTraining) or training.task != "causal_lm":
        return False
    return not isinstance(training.data, FileData) or training.data.prompt is not None


def _has_groups(data: SyntheticData | FileData | PubMedQAData | SquadData) -> bool:
    if isinstance(data, FileData):
        return data.group is not None
    if isinstance(data, PubMedQAData):
        return data.group != "none"
    return True  # the synthetic task has topics, squad files their groups


Training = Annotated[SurrogateTraining | RealTraining, Field(discriminator="mode")]

METRICS = {"classification": ("accuracy", "loss"), "causal_lm": ("perplexity", "nll")}

GENERATION_METRICS = ("rouge_l",)

DECISION_METRICS = ("decision_accuracy",)  # PubMedQA: the generated answer's first word

INF = float("inf")

# The values each metric can take (a target outside is never, or at once, reached).
METRIC_RANGES = {
    "accuracy": (0.0, 1.0),
    "loss": (0.0, INF),
    "perplexity": (1.0, INF),
    "nll": (0.0, INF),
    "rouge_l": (0.0, 1.0),
    "decision_accuracy": (0.0, 1.0),
    "exact_match": (0.0, 1.0),
    "token_f1": (0.0, 1.0),
}
