"""The training-throughput cases still build against the current trainer, and their PyTorch network
gives the same output shape as jaxhash's model (a private copy of ``build_experiment`` in the script
once went stale and broke the AlexNet case without a test noticing)."""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
)
import train_throughput  # noqa: E402

from jaxhash.data.augment import preprocess  # noqa: E402


@pytest.mark.parametrize("name", sorted(train_throughput.CASES))
def test_train_throughput_case_builds_the_same_network_on_both_sides(name):
  case = train_throughput.CASES[name](argparse.Namespace(overrides=[], small=True, images=8))
  config, image_shape = case.exp.config, case.exp.dataset.image_shape
  inputs = preprocess(jnp.zeros((2, *image_shape), jnp.uint8), None, config.data, train=False)
  variables = jax.eval_shape(case.exp.model.init, jax.random.key(0), inputs)
  ours = jax.eval_shape(case.exp.model.apply, variables, inputs)
  network = case.torch_network().eval()
  with torch.no_grad():
    theirs = network(torch.zeros((2, image_shape[2], *inputs.shape[1:3])))
  loss_input = (
    ours["logits"] if "logits" in ours else ours["z"]
  )  # what each case's torch loss takes
  assert tuple(theirs.shape) == loss_input.shape
  assert list(network.head.parameters())  # the head gets its own learning rate
