"""The one registry mechanism: built-in names, `package.module:Class`, members, options."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulator.methods.registry import CODECS, TOKEN_POLICIES, check_codec_ids
from simulator.registry import NoOptions, Registry
from simulator.server.optimizers import OPTIMIZERS

REGISTRIES = (CODECS, TOKEN_POLICIES, OPTIMIZERS)


@pytest.mark.parametrize("kind", REGISTRIES, ids=lambda r: r.what)
def test_every_builtin_resolves_with_its_members(kind):
    for name in kind.builtins:
        cls = kind.resolve(name)
        assert all(hasattr(cls, member) for member in kind.members)


def test_an_import_path_resolves_like_a_builtin():
    assert CODECS.resolve("simulator.methods.qsgd:QSGD") is CODECS.resolve("qsgd")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown thing 'nope'; use one of a or 'package.module:Class'"),
        ("no_such_module:X", "cannot import thing 'no_such_module:X'"),
        ("os:getcwd", "is a builtin_function_or_method, not a class"),
        ("collections:OrderedDict", "is not a thing: it lacks run (see here.py)"),
    ],
)
def test_what_is_not_a_member_of_the_kind_fails_with_the_fix(name, message):
    kind = Registry("thing", {"a": "collections:Counter"}, ("run",), "here.py")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kind.resolve(name)


def test_options_are_validated_and_a_class_without_options_refuses_any():
    with pytest.raises(ValidationError):
        CODECS.build("qsgd", {"bitz": 4})
    with pytest.raises(ValidationError):
        CODECS.build("fp16", {"anything": 1})
    assert CODECS.resolve("fp16").Options is NoOptions


def test_every_builtin_codec_has_its_own_codec_id():
    check_codec_ids([CODECS.resolve(name) for name in CODECS.builtins])
    ids = [CODECS.resolve(name).codec_id for name in CODECS.builtins]
    assert len(set(ids)) == len(ids)


def test_two_codec_classes_sharing_an_id_are_refused():
    class Twin(CODECS.resolve("qsgd")):  # a different class, the same codec_id
        pass

    check_codec_ids([CODECS.resolve("qsgd"), CODECS.resolve("qsgd")])  # one class twice is fine
    with pytest.raises(ValueError, match="share codec_id 3"):
        check_codec_ids([CODECS.resolve("qsgd"), Twin])
