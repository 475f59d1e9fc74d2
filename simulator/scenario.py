"""Scenario files: TOML -> validated, frozen `Scenario`.

Every failure raises `ScenarioError` naming the file, the dotted key, the offending value and
the fix, before anything runs. Relative paths are resolved against the scenario file's folder,
or against `network.trace_dir` for trace files when that is set; a path given with `--set`
(trace_dir, availability file, data path) is relative to the current directory instead.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from simulator.errors import ScenarioError, located
from simulator.methods import registry
from simulator.registry import Registry, validate_options
from simulator.server.optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS
from simulator.server.strategies import overselect_count

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]
OpenFraction = Annotated[float, Field(ge=0, lt=1)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# Sizes and costs beyond these are unit errors, and would overflow the simulated clock's floats.
MAX_MB = 1e9  # 1 PB per message
MAX_SECONDS = 1e9  # ~32 years of compute per client-round
MAX_TFLOP = 1e9  # 1e21 FLOP per client-round
# Each client costs ~360 bytes of fleet and link arrays: 10 million take ~17 s and 3.6 GB to
# build here, and larger populations would exhaust memory before anything runs.
MAX_CLIENTS = 10_000_000


def _at_most(limit: float, unit: str) -> Any:
    """A finite, non-negative number no larger than limit (a larger one is a unit error)."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {limit:g} {unit}; a larger value is a unit error")
        return value

    return AfterValidator(check)


Megabytes = Annotated[NonNegFloat, _at_most(MAX_MB, "MB")]
Seconds = Annotated[NonNegFloat, _at_most(MAX_SECONDS, "s")]
Teraflops = Annotated[NonNegFloat, _at_most(MAX_TFLOP, "TFLOP")]
DOWNLINK_CODEC = "fp16"  # the global adapter is broadcast as dense fp16 unless an arm says
DEFAULT_STRATEGY = "sync"


class Model(BaseModel):
    """Strict base: unknown keys are errors and configurations never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered(pair: tuple[float, float], what: str) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {list(pair)}")
    return pair


# --- population and devices -------------------------------------------------------------


class Population(Model):
    clients: Annotated[int, Field(gt=0)]
    per_round: Annotated[int, Field(gt=0)]
    mix: dict[str, PositiveFloat] = {"mid_phone": 1.0}

    @field_validator("clients")
    @classmethod
    def _not_too_many(cls, value: int) -> int:
        if value > MAX_CLIENTS:
            raise ValueError(
                f"at most {MAX_CLIENTS:,} clients: each costs ~360 bytes of device and link "
                f"arrays, so {value:,} would need ~{value * 360 / 1e9:.0f} GB before anything "
                "runs; simulate a smaller population"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Population:
        if self.per_round > self.clients:
            raise ValueError(
                f"per_round ({self.per_round}) exceeds clients ({self.clients}); "
                "lower per_round or raise clients"
            )
        if not self.mix:
            raise ValueError("mix is empty; give at least one device class, e.g. mid_phone = 1.0")
        return self


class DeviceSpec(Model):
    """A device class, or an override of a catalogue class (unset fields keep the catalogue's)."""

    tflops: tuple[PositiveFloat, PositiveFloat] | None = None
    p_compute_w: NonNegFloat | None = None
    p_tx_w: NonNegFloat | None = None
    p_rx_w: NonNegFloat | None = None

    @model_validator(mode="after")
    def _check(self) -> DeviceSpec:
        if self.tflops is not None:
            _ordered(self.tflops, "tflops")
        return self


# --- network ------------------------------------------------------------------------------


class ConstantLink(Model):
    kind: Literal["constant"]
    mbps: PositiveFloat


class UnlimitedLink(Model):
    """Infinite capacity: transfers take only the latency (e.g. an unmodelled downlink)."""

    kind: Literal["unlimited"]


class StragglerTailLink(Model):
    """The paper's heterogeneous LTE profile (fed-fstq-paper.md §6 item 7)."""

    kind: Literal["straggler_tail"]
    straggler_fraction: Fraction = 0.2
    straggler_mbps: tuple[PositiveFloat, PositiveFloat] = (0.5, 2.0)
    normal_mbps: tuple[PositiveFloat, PositiveFloat] = (5.0, 20.0)
    jitter_sigma: NonNegFloat = 0.3
    jitter_step_s: PositiveFloat = 60.0
    pool: Annotated[int, Field(gt=0)] = 64

    @model_validator(mode="after")
    def _check(self) -> StragglerTailLink:
        _ordered(self.straggler_mbps, "straggler_mbps")
        _ordered(self.normal_mbps, "normal_mbps")
        return self


class MarkovLink(Model):
    """Two-state (good/bad) Markov-modulated capacity with exponential dwell times."""

    kind: Literal["markov"]
    good_mbps: PositiveFloat
    bad_mbps: NonNegFloat
    mean_good_s: PositiveFloat
    mean_bad_s: PositiveFloat
    duration_s: PositiveFloat = 3600.0
    pool: Annotated[int, Field(gt=0)] = 64


class TraceLink(Model):
    """Replayed trace files, assigned to clients (seeded) with random start offsets.

    assign = "paired": client i replays file j of this list where it replays file j of the
    other direction's list, from the same start offset (the up and down traces of one
    recording, e.g. Mahimahi's *.up / *.down, sorted alike by their globs).
    """

    kind: Literal["trace"]
    files: list[str] = Field(min_length=1)
    format: Literal["mahimahi", "pensieve", "csv", "5gophers"]
    options: dict[str, Any] = {}
    scale: PositiveFloat = 1.0
    assign: Literal["random", "round_robin", "paired"] = "random"


class RatioLink(Model):
    """This direction = the other direction's link (same trace and offset) × ratio."""

    kind: Literal["ratio"]
    ratio: PositiveFloat


LinkSpec = Annotated[
    ConstantLink | UnlimitedLink | StragglerTailLink | MarkovLink | TraceLink | RatioLink,
    Field(discriminator="kind"),
]


class Network(Model):
    uplink: LinkSpec
    downlink: LinkSpec
    latency_ms: NonNegFloat = 0.0
    loss: OpenFraction = 0.0
    trace_dir: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Network:
        if self.uplink.kind == "ratio" and self.downlink.kind == "ratio":
            raise ValueError("uplink and downlink cannot both be kind = 'ratio'; give one a link")
        for this, other in (("uplink", "downlink"), ("downlink", "uplink")):
            link, base = getattr(self, this), getattr(self, other)
            if not (isinstance(link, TraceLink) and link.assign == "paired"):
                continue
            if not isinstance(base, TraceLink) or base.assign == "paired":
                raise ValueError(
                    f"{this}.assign = 'paired' follows the {other}'s trace assignment: make "
                    f"{other} a trace link with assign = 'random' or 'round_robin'"
                )
            if len(link.files) != len(base.files):
                raise ValueError(
                    f"{this}.assign = 'paired' pairs file i with the {other}'s file i, but "
                    f"there are {len(link.files)} {this} and {len(base.files)} {other} files; "
                    "give globs that match the same recordings"
                )
        return self


# --- availability -------------------------------------------------------------------------


class AlwaysAvailable(Model):
    kind: Literal["always"]


class BernoulliAvailability(Model):
    """Each selected client drops out of a round with probability p_drop (sends nothing)."""

    kind: Literal["bernoulli"]
    p_drop: Fraction


class SessionAvailability(Model):
    """On/off sessions, generated (exponential dwell times) or read from a CSV file."""

    kind: Literal["sessions"]
    mean_online_s: PositiveFloat | None = None
    mean_offline_s: PositiveFloat | None = None
    file: str | None = None
    p_drop: Fraction = 0.0

    @model_validator(mode="after")
    def _check(self) -> SessionAvailability:
        generated = self.mean_online_s is not None and self.mean_offline_s is not None
        if generated == (self.file is not None):
            raise ValueError(
                "give either mean_online_s and mean_offline_s (generated sessions) or file "
                "(a CSV of client,start_s,end_s online intervals), not both or neither"
            )
        return self


Availability = Annotated[
    AlwaysAvailable | BernoulliAvailability | SessionAvailability, Field(discriminator="kind")
]


# --- training, server, evaluation, methods ------------------------------------------------


class SurrogateTraining(Model):
    """Quality-vs-rounds model (see simulator/training/surrogate.py); no torch needed."""

    mode: Literal["surrogate"]
    metric: Slug = "accuracy"
    initial: Fraction = 0.3
    ceiling: Fraction = 0.9
    tau_rounds: PositiveFloat = 20.0
    noise_sd: NonNegFloat = 0.0
    adapter_params: Annotated[int, Field(gt=0)] | None = None
    downlink_mb: Megabytes = 0.0
    samples_per_client: Annotated[int, Field(gt=0)] = 100

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


class SyntheticData(DataCommon):
    """The embedded task: filler text where a few rare keywords decide the label (data.py)."""

    kind: Literal["synthetic"]
    samples: Annotated[int, Field(ge=20)] = 4000
    classes: Annotated[int, Field(ge=2, le=16)] = 4
    topics: Annotated[int, Field(ge=1, le=16)] = 4
    keywords_per_class: Annotated[int, Field(ge=1, le=8)] = 3
    words: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = (12, 24)
    distractor_rate: Fraction = 0.3

    @model_validator(mode="after")
    def _check(self) -> SyntheticData:
        _ordered(self.words, "words")
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


DataSpec = Annotated[SyntheticData | FileData | PubMedQAData, Field(discriminator="kind")]


class Partition(Model):
    """How the training split is divided among clients (partition.py)."""

    kind: Literal["iid", "dirichlet", "shards"] = "dirichlet"
    by: Literal["label", "group"] = "label"
    alpha: PositiveFloat = 0.5
    shards_per_client: Annotated[int, Field(gt=0)] = 2
    size_sigma: NonNegFloat = 0.0
    min_samples: Annotated[int, Field(gt=0)] = 4


class Lora(Model):
    """LoRA through PEFT; target_modules None = PEFT's default for the architecture."""

    rank: Annotated[int, Field(gt=0)] = 8
    alpha: PositiveFloat = 16.0
    dropout: OpenFraction = 0.0
    target_modules: list[str] | None = None


class LocalTraining(Model):
    """S local AdamW steps per client-round."""

    steps: Annotated[int, Field(gt=0)] = 10
    batch_size: Annotated[int, Field(gt=0)] = 8
    seq_len: Annotated[int, Field(ge=4)] = 64
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegFloat = 0.0
    max_grad_norm: PositiveFloat | None = 1.0


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
    workers: Annotated[int, Field(gt=0)] = 2
    # torch intra-op threads in every process that does model math (the main process and each
    # worker): float results depend on it, so it is part of the run, never taken from the host
    threads: Annotated[int, Field(gt=0, le=256)] = 2
    eval_batch_size: Annotated[int, Field(gt=0)] = 64

    @model_validator(mode="after")
    def _check(self) -> RealTraining:
        if (
            self.task == "classification"
            and isinstance(self.data, FileData)
            and not self.data.label
        ):
            raise ValueError("classification needs data.label (the label column)")
        if (
            self.task == "causal_lm"
            and isinstance(self.data, FileData)
            and self.partition.by == "label"
            and self.partition.kind != "iid"
        ):
            raise ValueError(
                "causal_lm text has no labels to partition by: set partition.kind = 'iid', "
                "or partition.by = 'group' with data.group"
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


def _instruction(training: SurrogateTraining | RealTraining) -> bool:
    """Causal LM on prompt/response data (what generation metrics need)."""
    if not isinstance(training, RealTraining) or training.task != "causal_lm":
        return False
    return not isinstance(training.data, FileData) or training.data.prompt is not None


def _has_groups(data: SyntheticData | FileData | PubMedQAData) -> bool:
    if isinstance(data, FileData):
        return data.group is not None
    if isinstance(data, PubMedQAData):
        return data.group != "none"
    return True  # the synthetic task has topics


Training = Annotated[SurrogateTraining | RealTraining, Field(discriminator="mode")]

METRICS = {"classification": ("accuracy", "loss"), "causal_lm": ("perplexity", "nll")}
GENERATION_METRICS = ("rouge_l",)
DECISION_METRICS = ("decision_accuracy",)  # PubMedQA: the generated answer's first word


class ServerBase(Model):
    """`rounds` is the number of aggregations: rounds (synchronous) or server updates (FedBuff)."""

    rounds: Annotated[int, Field(gt=0)]


class SyncServer(ServerBase):
    """Wait for every selected client that did not drop out (simulator/server/strategies.py)."""

    strategy: Literal["sync"]


class DeadlineServer(ServerBase):
    """Close the round at deadline_s after its start, or at the percentile of the planned
    finish times of the clients whose upload completes; later uploads are discarded."""

    strategy: Literal["deadline"]
    deadline_s: float | None = None
    percentile: float | None = None

    @field_validator("deadline_s")
    @classmethod
    def _positive_deadline(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < math.inf:
            raise ValueError(
                "deadline_s must be a positive number of seconds; give the round's length, "
                "e.g. deadline_s = 600"
            )
        return value

    @field_validator("percentile")
    @classmethod
    def _percent(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 100:
            raise ValueError("percentile must be in (0, 100], e.g. percentile = 80")
        return value

    @model_validator(mode="after")
    def _check(self) -> DeadlineServer:
        if (self.deadline_s is None) == (self.percentile is None):
            raise ValueError(
                "strategy 'deadline' needs exactly one of deadline_s (seconds after the round "
                "starts) or percentile (of the planned finish times); give one of them"
            )
        return self


class OverSelectServer(ServerBase):
    """Select ⌈per_round·(1 + epsilon)⌉, aggregate the first per_round arrivals, cancel the rest."""

    strategy: Literal["overselect"]
    epsilon: float

    @field_validator("epsilon")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if not 0 <= value < math.inf:
            raise ValueError(
                "epsilon must be >= 0 (the fraction of extra clients selected), e.g. 0.3"
            )
        return value


class FedBuffServer(ServerBase):
    """Asynchronous FedBuff: `concurrency` clients always training, a server update every
    `buffer_size` received updates, updates older than `max_staleness` versions dropped."""

    strategy: Literal["fedbuff"]
    concurrency: int
    buffer_size: int
    max_staleness: int | None = None

    @field_validator("concurrency", "buffer_size")
    @classmethod
    def _count(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be a positive number of clients, e.g. 10")
        return value

    @field_validator("max_staleness")
    @classmethod
    def _bound(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(
                "max_staleness must be >= 0 versions (0 keeps only fresh updates), or left out "
                "to keep every update"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> FedBuffServer:
        if self.buffer_size > self.concurrency:
            raise ValueError(
                f"buffer_size (K = {self.buffer_size}) exceeds concurrency "
                f"(C = {self.concurrency}): the server could wait on more updates than clients "
                "train at once; lower buffer_size or raise concurrency"
            )
        return self


Server = Annotated[
    SyncServer | DeadlineServer | OverSelectServer | FedBuffServer,
    Field(discriminator="strategy"),
]


class Evaluation(Model):
    """Evaluate every E rounds; targets refer to `metric` (default: the mode's first metric).

    Causal LM on instruction data: also greedy generations for the first `generate_samples`
    held-out prompts every `generate_every` evaluated rounds (0: never), scored by ROUGE-L
    against the reference responses (and, on PubMedQA, by the decision word's accuracy).
    """

    every: Annotated[int, Field(gt=0)] = 1
    targets: list[Annotated[float, Field(allow_inf_nan=False)]] = []
    metric: Slug | None = None
    generate_every: Annotated[int, Field(ge=0)] = 0
    generate_samples: Annotated[int, Field(gt=0)] = 32
    max_new_tokens: Annotated[int, Field(gt=0, le=1024)] = 48


class Method(Model):
    """One arm. Surrogate arms give a payload and a compute cost; real arms name a codec."""

    name: Slug
    payload_mb: Megabytes | None = None
    bits_per_param: Annotated[NonNegFloat, _at_most(64.0, "bits")] | None = None
    compute_s: Seconds | None = None
    compute_tflop: Teraflops | None = None
    downlink_mb: Megabytes | None = None
    efficiency: PositiveFloat = 1.0
    codec: str = "fp16"
    codec_options: dict[str, Any] = {}
    downlink_codec: str = DOWNLINK_CODEC
    downlink_codec_options: dict[str, Any] = {}
    token_policy: str = registry.NO_POLICY
    token_options: dict[str, Any] = {}
    server_optimizer: str = DEFAULT_OPTIMIZER
    server_optimizer_options: dict[str, Any] = {}
    freeze_a: bool = False
    local_steps: Annotated[int, Field(gt=0)] | None = None

    def check_surrogate(self) -> None:
        """Surrogate arms state their payload and compute cost."""
        if (self.payload_mb is None) == (self.bits_per_param is None):
            raise ValueError(f"arm {self.name!r}: give exactly one of payload_mb or bits_per_param")
        if (self.compute_s is None) == (self.compute_tflop is None):
            raise ValueError(f"arm {self.name!r}: give exactly one of compute_s or compute_tflop")
        if self.downlink_codec != DOWNLINK_CODEC or self.downlink_codec_options:
            raise ValueError(
                f"arm {self.name!r}: downlink_codec encodes real adapters (training.mode = "
                "'real'); a surrogate arm states its broadcast size as downlink_mb"
            )
        real_only = [
            key
            for key, default in (
                ("codec", DOWNLINK_CODEC),
                ("codec_options", {}),
                ("token_policy", registry.NO_POLICY),
                ("token_options", {}),
                ("server_optimizer", DEFAULT_OPTIMIZER),
                ("server_optimizer_options", {}),
            )
            if getattr(self, key) != default
        ]
        if real_only:
            raise ValueError(
                f"arm {self.name!r}: {', '.join(real_only)} only apply to training.mode = "
                "'real' (a surrogate arm states payload_mb or bits_per_param); remove them"
            )

    def check_real(self) -> list[type]:
        """Real arms measure payload and compute; modelled costs would be silently ignored.
        Returns the arm's uplink and downlink codec classes."""
        modelled = [
            key
            for key in ("payload_mb", "bits_per_param", "compute_s", "compute_tflop", "downlink_mb")
            if getattr(self, key) is not None
        ]
        if modelled or self.efficiency != 1.0:
            raise ValueError(
                f"arm {self.name!r}: {', '.join(modelled) or 'efficiency'} only apply to "
                "training.mode = 'surrogate' (real training measures bytes and work); remove them"
            )
        codecs = registry.CODECS
        up = self._check_options("codec", self.codec, self.codec_options, codecs)
        down = self._check_options(
            "downlink_codec", self.downlink_codec, self.downlink_codec_options, codecs
        )
        if getattr(down, "needs_fisher", False):
            raise ValueError(
                f"arm {self.name!r}: downlink_codec {self.downlink_codec!r} needs a Fisher "
                "estimate from local training, which the server broadcasting the global "
                "adapter does not have; use fp16, fp32, qsgd, topk or signsgd"
            )
        if self.token_policy != registry.NO_POLICY:
            self._check_options(
                "token_policy", self.token_policy, self.token_options, registry.TOKEN_POLICIES
            )
        elif self.token_options:
            raise ValueError(f"arm {self.name!r}: token_options need a token_policy")
        self._check_options(
            "server_optimizer", self.server_optimizer, self.server_optimizer_options, OPTIMIZERS
        )
        return [up, down]

    def _check_options(self, key: str, name: str, options: dict[str, Any], kind: Registry) -> type:
        """The class `key` names, after checking its options (`<key>_options`, or
        token_options for the token policy)."""
        cls = kind.resolve(name, key.replace("_", " "))
        try:
            validate_options(cls, options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors()
            )
            options_key = key.replace("_policy", "") + "_options"
            raise ValueError(f"arm {self.name!r}: {options_key} for {name!r}: {problems}") from None
        return cls


class Faults(Model):
    """Uploads damaged in transit, as fractions of the uploads that complete (seeded)."""

    drop: Fraction = 0.0  # lost: the server never receives the message
    corrupt: Fraction = 0.0  # one byte flipped
    truncate: Fraction = 0.0  # cut at a random length

    @model_validator(mode="after")
    def _check(self) -> Faults:
        if self.drop + self.corrupt + self.truncate > 1:
            raise ValueError("drop + corrupt + truncate must not exceed 1")
        return self


class Scenario(Model):
    name: Slug
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    population: Population
    devices: dict[Slug, DeviceSpec] = {}
    network: Network
    availability: Availability = AlwaysAvailable(kind="always")
    training: Training
    server: Server
    evaluation: Evaluation = Evaluation()
    faults: Faults = Faults()
    methods: list[Method] = Field(min_length=1)

    @field_validator("server", mode="before")
    @classmethod
    def _default_strategy(cls, value: Any) -> Any:
        if isinstance(value, dict) and "strategy" not in value:
            return {"strategy": DEFAULT_STRATEGY, **value}
        return value

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        self._check_strategy()
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method names must be unique; repeated: {', '.join(dup)}")
        if self.training.mode == "surrogate" and (self.faults.corrupt or self.faults.truncate):
            raise ValueError(
                "faults.corrupt and faults.truncate damage real message bytes: they need "
                "training.mode = 'real' (faults.drop works in both modes)"
            )
        if self.evaluation.generate_every and not _instruction(self.training):
            raise ValueError(
                "evaluation.generate_every needs instruction data: training.task = 'causal_lm' "
                "with data.prompt/response, kind = 'pubmedqa' or kind = 'synthetic'"
            )
        metric = self.evaluation.metric
        if metric is not None and metric not in self.metrics():
            raise ValueError(
                f"evaluation.metric {metric!r} is not reported by this training; "
                f"use one of {', '.join(self.metrics())}"
            )
        codecs = []
        for m in self.methods:
            if self.training.mode == "real":
                codecs += m.check_real()
            else:
                m.check_surrogate()
        registry.check_codec_ids(codecs)
        needs_params = [m.name for m in self.methods if m.bits_per_param is not None]
        if needs_params and getattr(self.training, "adapter_params", 1) is None:
            raise ValueError(
                f"methods {needs_params} use bits_per_param; set training.adapter_params"
            )
        return self

    def _check_strategy(self) -> None:
        """Strategy parameters that depend on the population and availability."""
        server, clients = self.server, self.population.clients
        if isinstance(server, OverSelectServer):
            selected = overselect_count(self.population.per_round, server.epsilon)
            if selected > clients:
                raise ValueError(
                    f"server.epsilon = {server.epsilon} selects {selected} clients per round, "
                    f"more than population.clients ({clients}); lower epsilon or per_round"
                )
        if isinstance(server, FedBuffServer):
            if server.concurrency > clients:
                raise ValueError(
                    f"server.concurrency ({server.concurrency}) exceeds population.clients "
                    f"({clients}); lower concurrency"
                )
            if self.faults.drop == 1.0:
                raise ValueError(
                    "faults.drop = 1 loses every upload, so FedBuff would never receive an "
                    "update; lower faults.drop"
                )
            if getattr(self.availability, "p_drop", 0.0) == 1.0:
                raise ValueError(
                    "availability.p_drop = 1 drops every client FedBuff starts, so no update "
                    "would ever arrive; lower p_drop"
                )

    def metrics(self) -> tuple[str, ...]:
        """The metrics evaluation reports, the default target metric first."""
        if isinstance(self.training, SurrogateTraining):
            return (self.training.metric,)
        found = METRICS[self.training.task]
        if self.evaluation.generate_every:
            found += GENERATION_METRICS
            if isinstance(self.training.data, PubMedQAData):
                found += DECISION_METRICS
        return found

    def method(self, name: str) -> Method:
        """The arm called name."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)


# --- loading ------------------------------------------------------------------------------

_FIXES = {"extra_forbidden": "remove it or check its spelling", "missing": "add it"}


def _branch_tags(node: dict[str, Any]) -> tuple[Any, ...]:
    """The discriminator values of a union member (pydantic puts them in error locations)."""
    return node.get("kind"), node.get("mode"), node.get("strategy", DEFAULT_STRATEGY)


def _key(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Dotted key; list positions of methods are shown by arm name when it is known."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            name = node[item].get("name") if isinstance(node[item], dict) else None
            parts[-1] += f"[{name!r}]" if name else f"[{item}]"
            node = node[item]
            continue
        if isinstance(node, dict) and item not in node and item in _branch_tags(node):
            continue  # discriminated-union branch name, not a key
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _describe(err: dict[str, Any], raw: dict[str, Any], source: str) -> str:
    key = _key(tuple(err["loc"]), raw)
    kind, ctx = err["type"], err.get("ctx", {})
    fix = _FIXES.get(kind)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx["discriminator"].strip("'")  # the key that picks the branch: kind, mode, ...
        key = f"{key}.{tag}" if key else tag
        if "tag" in ctx:
            problem, fix = f"unknown {tag} {ctx['tag']!r}", f"use one of {ctx['expected_tags']}"
        else:
            problem, fix = "missing", "add it"
    elif kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "missing":
        problem = err["msg"]
    else:
        problem = err["msg"].removeprefix("Value error, ")
        if not isinstance(err.get("input"), dict | list):  # a table's checks name their keys
            problem += f" (got {_short(repr(err.get('input')))})"
    return located(source, key or None, problem, fix)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_override(
    text: str, flag: str = "--set", example: str = "server.rounds=10"
) -> tuple[str, Any]:
    """`key.path=value` with value parsed as TOML (strings need no quotes)."""
    if "=" not in text:
        raise ScenarioError(f"{flag} {text!r}: expected key=value, e.g. {flag} {example}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ScenarioError(f"{flag} {text!r}: no key before '='; e.g. {flag} {example}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in the raw scenario; `methods.NAME.key` addresses an arm by name."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(parts[: i + 1]))
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ScenarioError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a table")
    if isinstance(node, list):
        raise ScenarioError(f"--set {key}: name a key inside the list item, e.g. methods.fedavg.x")
    node[parts[-1]] = value


def _list_item(items: list[Any], part: str, where: str) -> Any:
    if part.isdigit() and int(part) < len(items):
        return items[int(part)]
    for item in items:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [str(i.get("name")) for i in items if isinstance(i, dict)]
    raise ScenarioError(f"--set {where}: no item {part!r}; known: {', '.join(names)}")


def _resolve_paths(raw: dict[str, Any], base: Path, source: str) -> None:
    """Make file paths absolute and check that they exist."""
    network = raw.get("network")
    if isinstance(network, dict):
        trace_base = base
        if network.get("trace_dir"):
            trace_base = (base / str(network["trace_dir"])).resolve()
            if not trace_base.is_dir():
                raise ScenarioError(
                    located(
                        source,
                        "network.trace_dir",
                        f"folder {trace_base} does not exist",
                        "give an existing folder",
                    )
                )
            network["trace_dir"] = str(trace_base)
        for direction in ("uplink", "downlink"):
            link = network.get(direction)
            if isinstance(link, dict) and link.get("kind") == "trace":
                link["files"] = _expand(
                    link.get("files"), trace_base, source, f"network.{direction}.files"
                )
    avail = raw.get("availability")
    if isinstance(avail, dict) and isinstance(avail.get("file"), str):
        avail["file"] = _expand([avail["file"]], base, source, "availability.file")[0]
    data = raw.get("training", {}).get("data") if isinstance(raw.get("training"), dict) else None
    for key in ("path", "eval_path"):
        if isinstance(data, dict) and isinstance(data.get(key), str):
            data[key] = _expand([data[key]], base, source, f"training.data.{key}")[0]


def _expand(patterns: Any, base: Path, source: str, key: str) -> Any:
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return patterns  # the schema reports the type error
    found: list[str] = []
    for pattern in patterns:
        path = base / pattern
        matches = (
            sorted(path.parent.glob(path.name))
            if any(c in pattern for c in "*?[")
            else ([path] if path.exists() else [])
        )
        if not matches:
            raise ScenarioError(
                located(
                    source,
                    key,
                    f"{pattern!r} matches no file under {base}",
                    "fix the path (relative paths start at the scenario's folder)"
                    + (", or set network.trace_dir" if key.startswith("network") else ""),
                )
            )
        found.extend(str(m.resolve()) for m in matches)
    return found


CWD_PATHS = (
    "network.trace_dir",
    "availability.file",
    "training.data.path",
    "training.data.eval_path",
)


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override and validate a scenario file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ScenarioError(f"{source}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    for item in overrides:
        key, value = parse_override(item)
        if key in CWD_PATHS and isinstance(value, str):
            value = str(Path(value).resolve())  # typed on a command line: from the shell's folder
        apply_override(raw, key, value)
    return scenario_from_dict(raw, source, base=path.resolve().parent)


def scenario_from_dict(raw: dict[str, Any], source: str, base: Path) -> Scenario:
    """Validate an already-parsed scenario mapping."""
    _resolve_paths(raw, base, source)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw, source) for e in exc.errors(include_url=False)]
        raise ScenarioError("\n".join(lines)) from None


def resolved_dict(scenario: Scenario) -> dict[str, Any]:
    """A JSON-safe dict of the scenario with every default filled in."""
    return scenario.model_dump(mode="json")
