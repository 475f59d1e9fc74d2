"""The server model alone (numpy): broadcast per version, decode and reject, weighted step."""

from __future__ import annotations

import numpy as np

from simulator.methods.base import CodecContext, Group
from simulator.methods.registry import codec
from simulator.server.model import ServerModel
from simulator.server.optimizers import FedAdam, FedAvg

GROUPS = (Group("a", 0, (2, 3)), Group("b", 6, (4,)))


def _server(optimizer=None, downlink="fp16") -> ServerModel:
    initial = np.linspace(-1, 1, 10).astype(np.float32) / 3
    return ServerModel(initial, GROUPS, codec("fp32"), codec(downlink), optimizer or FedAvg(), 7)


def test_broadcast_is_the_downlink_codec_of_the_current_version():
    server = _server()
    size, state = server.broadcast()
    assert size == len(codec("fp16").encode(server.weights, CodecContext(GROUPS)))
    np.testing.assert_array_equal(state, server.weights.astype(np.float16).astype(np.float32))
    assert server.broadcast()[1] is state  # encoded once per version


def test_receive_rejects_what_does_not_decode_and_steps_by_the_weighted_mean():
    server = _server()
    up = codec("fp32").encode(np.full(10, 1.0, np.float32), CodecContext(GROUPS))
    down = codec("fp32").encode(np.full(10, -2.0, np.float32), CodecContext(GROUPS))
    before = server.weights.copy()
    stale = server.broadcast()[1]
    assert server.receive(3, [(0, up, 30.0), (1, b"junk", 5.0), (2, down, 5.0)]) == {1}
    np.testing.assert_allclose(server.weights - before, (30 - 10) / 35, rtol=1e-6)
    assert server.version == 3
    assert server.broadcast()[1] is not stale  # the new version is broadcast


def test_nothing_received_leaves_the_state_and_moves_the_version():
    server = _server()
    before = server.weights.copy()
    assert server.receive(1, [(0, b"", 1.0)]) == {0}
    np.testing.assert_array_equal(server.weights, before)
    assert server.version == 1


def test_arrays_hold_the_global_state_and_the_optimizer_moments():
    server = _server(FedAdam())
    update = codec("fp32").encode(np.full(10, 0.5, np.float32), CodecContext(GROUPS))
    server.receive(1, [(0, update, 1.0)])
    arrays = server.arrays()
    assert sorted(arrays) == ["global", "server-m", "server-v"]
    again = _server(FedAdam())
    again.load(arrays, 1)
    for twin in (server, again):
        twin.receive(2, [(0, update, 1.0)])
    np.testing.assert_array_equal(server.weights, again.weights)
