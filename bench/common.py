"""What every benchmark shares: where results go, what host produced them, how long it took."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# A script's wall time counts from when it imports this module (imports before it are not counted).
STARTED = time.perf_counter()


def host() -> dict[str, Any]:
    """The machine a figure was measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (with the host and the script's wall time) atomically,
    through a temporary name of its own, so benchmarks run side by side never share one."""
    from simulator.recorder import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    wall_s = round(time.perf_counter() - STARTED, 1)
    write_json_atomic(path, {**result, "host": host(), "wall_s": wall_s})
    return path


def print_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """Print rows as a right-aligned table: columns maps a row key to its header."""
    widths = {
        key: max(len(header), *(len(str(row[key])) for row in rows))
        for key, header in columns.items()
    }
    print(" ".join(f"{header:>{widths[key]}}" for key, header in columns.items()))
    for row in rows:
        print(" ".join(f"{row[key]!s:>{widths[key]}}" for key in columns))


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """Fastest of several runs in host seconds: the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def math_seconds(scenario: Any, scenario_file: Path) -> tuple[float, dict[str, float]]:
    """Run a scenario into a temporary folder: (host seconds of the whole run, model loading
    included; host seconds of the model's math by part, summed over arms from the manifests)."""
    import tempfile

    from simulator.experiment import prepare_out, run_scenario

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prepare_out(out, scenario_file, scenario)
        start = time.perf_counter()
        folders = run_scenario(scenario, out, progress=False)
        total = time.perf_counter() - start
        parts: dict[str, float] = {}
        for folder in folders:
            math = json.loads((folder / "manifest.json").read_text())["host_seconds_math"]
            for name, seconds in math.items():
                parts[name] = parts.get(name, 0.0) + seconds
    return total, parts


def timed_local_steps(scenario: Any, examples: int) -> tuple[float, Any]:
    """Host seconds and LocalStats of one client's local steps (the scenario's training.local)
    on its first `examples` training examples, from the seeded initial adapter."""
    import numpy as np

    from simulator.training.local import train_local
    from simulator.training.task import RealTask

    task = RealTask(scenario)
    indices = task.data.train[:examples]
    spec = scenario.training.local
    start = time.perf_counter()
    _, stats = train_local(
        task.model, task.tokens, indices, spec, task.flops, np.random.SeedSequence(0)
    )
    return time.perf_counter() - start, stats


class PlainLoop:
    """The floor: a LoRA fine-tuning loop written directly against transformers and PEFT, as a
    user would write it (the scenario's LoRA, AdamW, clipping; causal LM: labels -100 off the
    targets and full logits; classification: the model's own cross-entropy)."""

    def __init__(self, scenario: Any, num_labels: int) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from simulator.training.models import resolve_model

        spec = scenario.training
        folder = resolve_model(spec.model)
        if spec.task == "classification":
            base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
        else:
            base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        lora = LoraConfig(
            task_type="SEQ_CLS" if spec.task == "classification" else "CAUSAL_LM",
            r=spec.lora.rank,
            lora_alpha=spec.lora.alpha,
            lora_dropout=spec.lora.dropout,
            target_modules=spec.lora.target_modules or None,
        )
        if spec.task != "classification" and lora.target_modules is None:
            lora.target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
        self.model = get_peft_model(base, lora)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.initial = [p.detach().clone() for p in self.params]
        self.local = spec.local
        self.bf16 = spec.dtype == "bfloat16"

    def run(self, batches: list) -> float:
        """Train on the batches from the initial adapter; the last loss."""
        import torch

        with torch.no_grad():
            for param, start in zip(self.params, self.initial, strict=True):
                param.copy_(start)
        optimizer = torch.optim.AdamW(
            self.params, lr=self.local.lr, weight_decay=self.local.weight_decay
        )
        self.model.train()
        for batch in batches:
            if batch.targets is None:
                labels = batch.labels
            else:
                labels = batch.input_ids.masked_fill(batch.targets == 0, -100)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels
                )
            out.loss.backward()
            if self.local.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.local.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach())


class Floor:
    """The project's local steps against the plain loop on the same batches of client 0."""

    def __init__(self, scenario: Any) -> None:
        import numpy as np

        from simulator import seeds
        from simulator.training.local import _batches
        from simulator.training.task import RealTask

        self.scenario = scenario
        self.task = RealTask(scenario)
        self.local = scenario.training.local
        self.rows = self.task.parts[0]
        self.seed = seeds.seed_sequence(self.task.seed, "training", 0, 0)
        gen = np.random.default_rng(self.seed)
        self.batches = _batches(
            self.task.tokens, self.rows, self.local.batch_size, self.local.steps, gen
        )
        self.plain = PlainLoop(scenario, len(self.task.data.label_names))
        self.start = self.task.model.get_flat()

    def project_steps(self) -> None:
        """The project's local steps (train_local) from the same initial adapter."""
        from simulator.training.local import train_local

        self.task.model.set_flat(self.start)
        task = self.task
        train_local(task.model, task.tokens, self.rows, self.local, task.flops, self.seed)

    def paired(self, extra: dict[str, Callable[[], None]], pairs: int) -> dict[str, Any]:
        """Host seconds of plain, steps (and `extra`) in paired runs, the first to run
        rotating; the per-pair ratios to plain, their median and range."""
        import statistics

        runs = {"plain": lambda: self.plain.run(self.batches), "steps": self.project_steps, **extra}
        self.plain.run(self.batches[:1])  # warm both (first-call allocations)
        self.project_steps()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for pair in range(pairs):
            shift = pair % len(names)
            for name in names[shift:] + names[:shift]:
                began = time.perf_counter()
                runs[name]()
                seconds[name].append(time.perf_counter() - began)
        ratios = {
            name: [a / b for a, b in zip(seconds[name], seconds["plain"], strict=True)]
            for name in names[1:]
        }
        return {
            "steps": self.local.steps,
            "batch": self.local.batch_size,
            "widths": [int(b.attention_mask.sum(1).max()) for b in self.batches],
            "seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
            "s_per_step": {
                k: round(statistics.median(v) / self.local.steps, 4) for k, v in seconds.items()
            },
            "ratio_median": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
            "ratio_range": {k: [round(min(v), 3), round(max(v), 3)] for k, v in ratios.items()},
        }
