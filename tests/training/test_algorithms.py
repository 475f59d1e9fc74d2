"""Client algorithms against hand computations on a tiny model: FedAvg unchanged, FedProx's
proximal step, SCAFFOLD's corrected gradient, c_i⁺ and server c, their bytes on both links,
resume with their state, a user's class and clear errors for bad options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import interrupt_at_append, real_scenario_dict
from test_local import SETTINGS, _setup

from simulator import seeds
from simulator.errors import ScenarioError
from simulator.executors import InlineExecutor
from simulator.experiment import load_resumable, prepare_out, run_scenario
from simulator.methods.base import CodecContext
from simulator.methods.packing import OVERHEAD
from simulator.recorder import ArmRecorder
from simulator.scenario import load_scenario
from simulator.server.control import unbundle
from simulator.training.algorithms import CONTROL, FedAvg, FedProx, FedProxOptions, Scaffold
from simulator.training.base import LocalResult
from simulator.training.client import Job, client_update
from simulator.training.local import _batches, _token_losses, train_local
from simulator.training.real import RealTrainer
from simulator.training.task import RealTask


class Frozen(FedAvg):
    """A user's algorithm: zero every gradient, so (no weight decay) the adapter never moves."""

    class _Round:
        def __init__(self, params):
            self.params = params

        def correct(self):
            for param in self.params:
                param.grad.zero_()

        def finish(self, delta, steps):
            return {}, {}

    def begin(self, params, state, shared, lr):
        return self._Round(params)


class NotAnAlgorithm:
    """Lacks begin and server_update."""

    shared = ()


def _params() -> list[torch.nn.Parameter]:
    return [
        torch.nn.Parameter(torch.tensor([[1.0, -2.0]])),
        torch.nn.Parameter(torch.tensor([3.0])),
    ]


def test_fedprox_adds_the_gradient_of_the_proximal_term():
    params = _params()
    round_ = FedProx(FedProxOptions(mu=0.5)).begin(params, {}, {}, 0.1)
    with torch.no_grad():
        for p in params:
            p.add_(1.5)  # w − w_global = 1.5 everywhere
    for p in params:
        p.grad = torch.full_like(p, 2.0)
    round_.correct()
    for p in params:  # 2 + 0.5 · 1.5
        torch.testing.assert_close(p.grad, torch.full_like(p, 2.75), rtol=0, atol=0)
    assert round_.finish(np.zeros(3, np.float32), 4) == ({}, {})


def test_fedprox_steps_are_adamw_on_the_proximal_objective(tiny_models):
    """Two local steps (the term is 0 at the first) against a loop that adds μ/2‖w − w₀‖² to
    the loss itself and lets autograd, clipping and AdamW do the rest."""
    model, tokens, rows, flops = _setup(tiny_models)
    settings = SETTINGS.model_copy(update={"steps": 2, "lr": 5e-2, "weight_decay": 0.01})
    mu, seed = 5.0, np.random.SeedSequence(11)
    start = model.get_flat()
    plain, _ = train_local(model, tokens, rows, settings, flops, seed)
    model.set_flat(start)
    local = FedProx(FedProxOptions(mu=mu)).begin(model.params, {}, {}, settings.lr)
    prox, _ = train_local(model, tokens, rows, settings, flops, seed, correct=local.correct)

    model.set_flat(start)
    anchor = [p.detach().clone() for p in model.params]
    gen = np.random.default_rng(seed)
    torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    optimizer = torch.optim.AdamW(model.params, lr=settings.lr, weight_decay=0.01)
    embed = model.model.get_input_embeddings()
    model.model.train()
    for batch in _batches(tokens, rows, settings.batch_size, settings.steps, gen):
        with torch.no_grad():
            embeds = embed(batch.input_ids)
        loss, _ = _token_losses(model, batch, embeds, None, False)
        term = sum(((p - a) ** 2).sum() for p, a in zip(model.params, anchor, strict=True))
        (loss + mu / 2 * term).backward()
        torch.nn.utils.clip_grad_norm_(model.params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    by_hand = model.get_flat() - start
    np.testing.assert_allclose(prox, by_hand, rtol=0, atol=1e-6)
    assert np.abs(prox - plain).max() > 1e-3  # the term bites at step 2


def test_scaffold_corrects_the_gradient_and_updates_its_variates_by_hand():
    params = _params()
    server = np.array([0.5, 1.0, -1.0], np.float32)
    own = np.array([0.25, -0.5, 2.0], np.float32)
    round_ = Scaffold().begin(params, {CONTROL: own}, {CONTROL: server}, 0.1)
    raw = [np.array([1.0, 2.0, -1.0], np.float32), np.array([3.0, 0.0, 1.0], np.float32)]
    for gradient in raw:  # K = 2 local steps
        for p, g in zip(params, np.split(gradient, [2]), strict=True):
            p.grad = torch.from_numpy(g).view(p.shape).clone()
        round_.correct()
        grads = np.concatenate([p.grad.reshape(-1).numpy() for p in params])
        np.testing.assert_array_equal(grads, gradient - own + server)  # g − c_i + c
    kept, sent = round_.finish(np.zeros(3, np.float32), 2)
    np.testing.assert_array_equal(kept[CONTROL], [2.0, 1.0, 0.0])  # the mean raw gradient
    np.testing.assert_array_equal(sent[CONTROL], [1.75, 1.5, -2.0])  # c_i⁺ − c_i
    # the same c_i⁺ as option II's c_i − c + (w_global − w_local)/(K·η) under plain SGD
    lr = 0.1
    sgd_delta = -lr * sum(g - own + server for g in raw)  # w_local − w_global
    option_ii = own - server - sgd_delta / (2 * lr)
    np.testing.assert_allclose(kept[CONTROL], option_ii, rtol=1e-6, atol=1e-6)


def test_scaffold_first_round_starts_from_zero_variates():
    params = _params()
    round_ = Scaffold().begin(params, {}, {CONTROL: np.zeros(3, np.float32)}, 0.5)
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    round_.correct()
    for p in params:  # c = c_i = 0: the gradient is unchanged
        torch.testing.assert_close(p.grad, torch.full_like(p, 3.0), rtol=0, atol=0)
    kept, sent = round_.finish(np.array([1.0, 2.0, -3.0], np.float32), 1)
    np.testing.assert_array_equal(kept[CONTROL], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(kept[CONTROL], sent[CONTROL])


def _trainer(write_scenario, tiny_models, tmp_path, **method) -> RealTrainer:
    raw = real_scenario_dict(tiny_models["bert"], methods=[{"name": "arm", **method}])
    scenario = load_scenario(write_scenario(raw))
    task = RealTask(scenario)
    recorder = ArmRecorder(tmp_path / "arm", {}, resume=False)
    return RealTrainer(task, InlineExecutor(task), scenario.methods[0], recorder)


def test_the_default_arm_trains_as_plain_local_steps(write_scenario, tiny_models, tmp_path):
    trainer = _trainer(write_scenario, tiny_models, tmp_path, codec="fp32")
    task, arm = trainer.task, trainer.arm
    assert arm.client == "fedavg"
    start = trainer.server.broadcast()[1]
    update = client_update(task, arm, Job(2, 1, start))
    task.model.set_flat(start)
    seed = seeds.seed_sequence(task.seed, "training", 2, 1)
    plain, _ = train_local(
        task.model, task.tokens, task.parts[2], task.spec.local, task.flops, seed
    )
    sent = trainer.codec.decode(update.message, CodecContext(task.model.groups))
    np.testing.assert_array_equal(sent, plain)
    assert update.message == trainer.codec.encode(plain, CodecContext(task.model.groups))


def test_scaffold_variates_ride_both_links_and_update_the_server(
    write_scenario, tiny_models, tmp_path
):
    fedavg = _trainer(write_scenario, tiny_models, tmp_path / "a")
    trainer = _trainer(write_scenario, tiny_models, tmp_path / "b", client="scaffold")
    size = trainer.server.weights.size
    fp16 = OVERHEAD + 2 * size  # one dense fp16 frame of the adapter's size
    assert fedavg.downlink_bytes(0) == fp16
    assert trainer.downlink_bytes(0) == 2 * fp16  # the global adapter and c
    np.testing.assert_array_equal(trainer.server.broadcast_arrays()[CONTROL], np.zeros(size))
    trainer.begin_round([(1, 1), (4, 1)], lambda client, seconds: 0)
    results = [(c, trainer.train(c, 1)) for c in (1, 4)]
    for _, result in results:  # the update and Δc_i, each behind its u32 length
        assert result.uplink_bytes == 2 * (4 + fp16)
    context = CodecContext(trainer.server.groups)
    sent = [trainer.server.downlink.decode(unbundle(r.message, 2)[1], context) for _, r in results]
    for (client, _), delta_c in zip(results, sent, strict=True):  # c_i was 0: Δc_i = c_i⁺
        kept = trainer.client_state[client][CONTROL]
        np.testing.assert_array_equal(delta_c, kept.astype(np.float16).astype(np.float32))
        assert np.abs(kept).max() > 0
    trainer.aggregate(1, results)
    # c ← 0 + (|S|/N)·mean(Δc_i) with |S| = 2 of N = 8
    expected = (2 / 8) * (sent[0].astype(np.float64) + sent[1]) / 2
    np.testing.assert_allclose(trainer.server.shared[CONTROL], expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(
        trainer.server.broadcast_arrays()[CONTROL],
        trainer.server.shared[CONTROL].astype(np.float16).astype(np.float32),
    )


def test_a_damaged_bundle_is_rejected(write_scenario, tiny_models, tmp_path):
    trainer = _trainer(write_scenario, tiny_models, tmp_path, client="scaffold")
    trainer.begin_round([(0, 1)], lambda client, seconds: 0)
    result = trainer.train(0, 1)
    cut = LocalResult(result.message[:-3], result.num_samples)
    before = trainer.server.shared[CONTROL].copy()
    assert trainer.aggregate(1, [(0, cut)]) == {0}
    np.testing.assert_array_equal(trainer.server.shared[CONTROL], before)


def test_a_user_algorithm_by_module_and_class(write_scenario, tiny_models, tmp_path):
    trainer = _trainer(
        write_scenario, tiny_models, tmp_path, codec="fp32", client="test_algorithms:Frozen"
    )
    start = trainer.server.broadcast()[1]
    update = client_update(trainer.task, trainer.arm, Job(0, 1, start))
    sent = trainer.codec.decode(update.message, CodecContext(trainer.task.model.groups))
    np.testing.assert_array_equal(sent, np.zeros_like(sent))


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (
            {"client": "fedprox", "client_options": {"mu": -1.0}},
            "arm 'x': client_options for 'fedprox': mu: Input should be greater than 0",
        ),
        (
            {"client": "fedprox", "client_options": {"m": 0.1}},
            "arm 'x': client_options for 'fedprox': m: Extra inputs are not permitted",
        ),
        (
            {"client": "fedavg", "client_options": {"mu": 0.1}},
            "arm 'x': client_options for 'fedavg': mu: Extra inputs are not permitted",
        ),
        (
            {"client": "fedmagic"},
            "arm 'x': unknown client 'fedmagic'; use one of fedavg, fedprox, scaffold or "
            "'package.module:Class'",
        ),
        (
            {"client": "test_algorithms:NotAnAlgorithm"},
            "it lacks begin, server_update (see simulator/training/algorithms.py)",
        ),
    ],
)
def test_bad_client_settings_are_clear_errors(write_scenario, tiny_models, method, expected):
    raw = real_scenario_dict(tiny_models["bert"], methods=[{"name": "x", **method}])
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_scenario(raw))
    assert expected in str(info.value)


def test_resume_with_scaffold_state_is_exact(write_scenario, tiny_models, tmp_path, monkeypatch):
    raw = real_scenario_dict(
        tiny_models["bert"],
        server={"rounds": 3},
        methods=[{"name": "scaffold", "client": "scaffold"}],
    )

    def run(out):
        path = write_scenario(raw)
        scenario = load_scenario(path)
        prepare_out(out, path, scenario)
        return run_scenario(scenario, out, progress=False)

    (reference,) = run(tmp_path / "ref")
    interrupt_at_append(monkeypatch, 1 + 2, lambda: run(tmp_path / "cut"))  # 2 rounds written
    cut = tmp_path / "cut"
    (resumed,) = run_scenario(load_resumable(cut)[0], cut, resume=True, progress=False)
    for name in ("rounds.csv", "clients.csv", "evals.csv", "summary.json"):
        assert (reference / name).read_bytes() == (resumed / name).read_bytes(), name
    state = np.load(sorted(reference.glob("state-r*.npz"))[-1])
    assert "shared-control" in state.files
    assert any(name.endswith("-control") and name.startswith("client-") for name in state.files)
