"""The optimizer's small pure pieces: the head's larger rate, the schedules, weight decay, names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhash.config import base_config, validate
from jaxhash.run import optim


def settings(**changes):
  """The base config's optim section with ``changes``."""
  config = base_config("dlbhc").optim
  for key, value in changes.items():
    config[key] = value
  return config


def first_update(optim_config, params, grads) -> dict:
  tx, _ = optim.make_optimizer(optim_config, total_steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def two_groups(value: float) -> dict:
  return {"backbone": {"w": jnp.full(3, value)}, "head": {"w": jnp.full(3, value)}}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_head_learns_head_lr_multiplier_times_faster(optimizer):
  config = settings(
    optimizer=optimizer,
    learning_rate=0.1,
    momentum=0.0,
    weight_decay=0.0,
    head_lr_multiplier=10.0,
    schedule="constant",
  )
  updates = first_update(config, two_groups(1.0), two_groups(1.0))
  backbone, head = np.asarray(updates["backbone"]["w"]), np.asarray(updates["head"]["w"])
  np.testing.assert_allclose(backbone, -0.1, rtol=1e-5)  # Adam's first step: -rate * sign
  np.testing.assert_allclose(head, 10 * backbone, rtol=1e-6)


def test_sgd_weight_decay_is_added_to_the_gradient_caffe_style():
  config = settings(
    learning_rate=0.5, momentum=0.0, weight_decay=0.1, head_lr_multiplier=2.0, schedule="constant"
  )
  updates = first_update(config, two_groups(2.0), two_groups(0.0))
  np.testing.assert_allclose(updates["backbone"]["w"], -0.5 * 0.1 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(updates["head"]["w"], -2 * 0.5 * 0.1 * 2.0, rtol=1e-6)


@pytest.mark.parametrize(
  "decay_every, total, expected",
  [
    (0, 30, {0: 1.0, 9: 1.0, 10: 0.1, 19: 0.1, 20: 0.01, 29: 0.01, 30: 0.001}),  # every third
    (4, 10, {0: 1.0, 3: 1.0, 4: 0.1, 7: 0.1, 8: 0.01, 10: 0.01}),
  ],
)
def test_the_step_schedule_multiplies_by_decay_factor_at_each_boundary(
  decay_every, total, expected
):
  schedule = optim.learning_rate_schedule(
    settings(learning_rate=1.0, decay_factor=0.1, decay_every=decay_every, schedule="step"), total
  )
  for step, rate in expected.items():
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step


def test_cosine_and_constant_schedules():
  cosine = optim.learning_rate_schedule(settings(learning_rate=0.2, schedule="cosine"), 100)
  assert float(cosine(0)) == pytest.approx(0.2)
  assert float(cosine(50)) == pytest.approx(0.1, rel=1e-5)
  assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
  constant = optim.learning_rate_schedule(settings(learning_rate=0.2, schedule="constant"), 100)
  assert [float(constant(s)) for s in (0, 99, 1000)] == pytest.approx([0.2] * 3)


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("optimizer", "rmsprop", "config.optim.optimizer='rmsprop': use sgd or adam."),
    ("schedule", "linear", "config.optim.schedule='linear': use constant, step or cosine."),
  ],
)
def test_an_unknown_optimizer_or_schedule_is_an_error_not_a_fallback(key, value, message):
  with pytest.raises(ValueError) as error:
    optim.make_optimizer(settings(**{key: value}), 10)
  assert str(error.value) == message
  config = base_config("dlbhc")
  config.optim[key] = value
  with pytest.raises(ValueError) as error:
    validate(config)
  assert str(error.value) == message


def test_parameters_outside_the_backbone_and_head_groups_are_refused():
  tx, _ = optim.make_optimizer(settings(), 10)
  renamed = {"backbone": {"w": jnp.ones(2)}, "hash_head": {"w": jnp.ones(2)}}
  with pytest.raises(
    ValueError,
    match=r"expects parameters under the keys \['backbone', 'head'\], "
    r"got \['backbone', 'hash_head'\]",
  ):
    jax.eval_shape(tx.init, renamed)
