"""Control variates at the server: the uplink bundle, c's update by hand, and the server model
broadcasting, updating and checkpointing them (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.methods.registry import codec
from simulator.server.control import bundle, control_update, unbundle
from simulator.server.model import ServerModel
from simulator.server.optimizers import FedAvg
from simulator.training.algorithms import CONTROL, Scaffold

GROUPS = (Group("a", 0, (2, 2)),)


def test_bundle_round_trips_and_refuses_damage():
    parts = [b"update", b"", b"control"]
    message = bundle(parts)
    assert len(message) == 3 * 4 + 13  # a u32 length per part
    assert unbundle(message, 3) == parts
    for damaged, count in ((message[:-1], 3), (message + b"x", 3), (message, 4), (b"\x01", 1)):
        with pytest.raises(MessageError):
            unbundle(damaged, count)


def test_control_update_by_hand():
    c = np.array([1.0, 0.0, -1.0, 2.0], np.float32)
    deltas = [
        np.array([2.0, 4.0, 0.0, -2.0], np.float32),
        np.array([0.0, 2.0, 2.0, 2.0], np.float32),
    ]
    # c + (|S|/N)·mean = c + (2/10)·[1, 3, 1, 0]
    np.testing.assert_allclose(control_update(c, deltas, 10), [1.2, 0.6, -0.8, 2.0], rtol=1e-6)
    assert control_update(c, [], 10) is c


def _server() -> ServerModel:
    initial = np.array([0.5, -0.25, 1.0, 0.0], np.float32)
    return ServerModel(
        initial, GROUPS, codec("fp32"), codec("fp16"), FedAvg(), 7, Scaffold(), clients=4
    )


def test_server_broadcasts_updates_and_checkpoints_c():
    server = _server()
    frame = len(codec("fp16").encode(server.weights, CodecContext(GROUPS)))
    assert server.broadcast()[0] == 2 * frame  # the adapter and c, both fp16
    np.testing.assert_array_equal(server.broadcast_arrays()[CONTROL], np.zeros(4))
    context = CodecContext(GROUPS)
    delta_c = np.array([0.5, 1.0, -1.5, 3.0], np.float32)
    message = bundle(
        [
            codec("fp32").encode(np.ones(4, np.float32), context),
            codec("fp16").encode(delta_c, context),
        ]
    )
    assert server.receive(1, [(0, message, 10.0), (1, b"junk", 5.0)]) == {1}
    np.testing.assert_allclose(server.shared[CONTROL], delta_c / 4)  # |S| = 1 of N = 4
    np.testing.assert_array_equal(server.broadcast_arrays()[CONTROL], delta_c / 4)
    restored = _server()
    restored.load(server.arrays(), 1)
    np.testing.assert_array_equal(restored.shared[CONTROL], server.shared[CONTROL])
    assert restored.broadcast()[0] == server.broadcast()[0]
