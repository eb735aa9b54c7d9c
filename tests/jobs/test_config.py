"""Optimizer config validation: every key typed and ranged, routed to constructor or compile()."""

from __future__ import annotations

import inspect

import dspy
import pytest

from dspy_bridge.errors import BridgeError
from dspy_bridge.jobs.config import OPTIMIZER_OPTIONS, OPTIMIZERS, split, validate_config


def test_every_optimizer_key_exists_in_dspy() -> None:
    """`init` keys are constructor parameters, `compile` keys compile() parameters (DSPy 3.4)."""
    for name in OPTIMIZERS:
        cls = getattr(dspy.teleprompt, name)
        init = set(inspect.signature(cls.__init__).parameters)
        compile_ = set(inspect.signature(cls.compile).parameters)
        for key, option in OPTIMIZER_OPTIONS[name].items():
            if option.target == "init" and name != "KNNFewShot":
                assert key in init, (name, key)
            elif option.target == "compile":
                assert key in compile_, (name, key)


def test_normalizes_and_splits() -> None:
    config = validate_config(
        "MIPROv2",
        {"auto": None, "num_trials": 2.0, "num_candidates": 3, "init_temperature": 1},
        trainset_size=10,
        valset_size=4,
    )
    assert config == {"auto": None, "num_trials": 2, "num_candidates": 3, "init_temperature": 1.0}
    assert type(config["num_trials"]) is int and type(config["init_temperature"]) is float
    parts = split("MIPROv2", config)
    assert parts["compile"] == {"num_trials": 2}
    assert parts["init"] == {"auto": None, "num_candidates": 3, "init_temperature": 1.0}


@pytest.mark.parametrize(
    ("optimizer", "config", "key"),
    [
        ("LabeledFewShot", {"k": True}, "k"),
        ("LabeledFewShot", {"k": None}, "k"),
        ("GEPA", {"reflection_lm": 3}, "reflection_lm"),
        ("GEPA", {"perfect_score": float("inf")}, "perfect_score"),
        ("MIPROv2", {"auto": "light", "num_trials": 3}, "num_trials"),
        ("MIPROv2", {"minibatch_size": 50}, "minibatch_size"),
        ("BootstrapFewShot", {"teacher": "x"}, "teacher"),
    ],
)
def test_bad_values_name_the_key(optimizer: str, config: dict[str, object], key: str) -> None:
    with pytest.raises(BridgeError) as caught:
        validate_config(optimizer, config, trainset_size=10, valset_size=4)
    assert caught.value.reason == "INVALID_OPTIMIZER_CONFIG"
    assert [v.field for v in caught.value.violations] == [f"config.{key}"]


def test_reflection_lm_forms() -> None:
    assert validate_config(
        "GEPA", {"reflection_lm": "offline"}, trainset_size=2, valset_size=0
    ) == {"reflection_lm": {"model": "offline"}}
