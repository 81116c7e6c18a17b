"""Transfer learning: model.trainable, batch-norm statistics in the state, the frozen-prefix cache
(resumable shard by shard, verified on reuse), and kill-resume of a cached run."""

import dataclasses
import io
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from jaxhash import config as config_lib
from jaxhash.errors import UsageError
from jaxhash.models import BACKBONES
from jaxhash.models.layers import batch_norm
from jaxhash.models.stages import run_stages
from jaxhash.run import experiment, feature_cache, frozen_prefix, model_state, trainer
from jaxhash.run.checkpoint import Checkpointer


class Tiny(nn.Module):
  """Two stages, each with batch norm: a strided conv, then pooling and a dense layer."""

  STAGES = ("conv", "pool")
  freeze_batch_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, start=0, stop=None):
    norm = lambda name: batch_norm(name, train, self.freeze_batch_norm, 0.9, 1e-5, jnp.float32)

    def conv(x):
      return nn.relu(norm("bn0")(nn.Conv(4, (3, 3), strides=2, name="conv")(x)))

    def pool(x):
      return nn.relu(norm("bn1")(nn.Dense(8, name="fc")(jnp.mean(x, axis=(1, 2)))))

    return run_stages(self.STAGES, [("conv", conv), ("pool", pool)], x, start, stop)


@pytest.fixture
def tiny(monkeypatch):
  monkeypatch.setitem(BACKBONES, "tiny", Tiny)


def tiny_config(steps=4, trainable="1", freeze=False):
  c = load_config("test", f"steps={steps}").unlock()
  c.model.backbone, c.model.trainable, c.model.freeze_batch_norm = "tiny", trainable, freeze
  c.optim.schedule = "constant"
  c.eval.rerank = False
  return c.lock()


@pytest.mark.parametrize(
  "trainable, message",
  [
    ("some", "use all, head, or a number"),
    ("0", "use all, head, or a number"),
    ("10", "has only 9 stages"),
    ("head@lenet", "needs a backbone with stages"),
  ],
)
def test_trainable_is_validated_with_one_line(trainable, message):
  c = load_config("test").unlock()
  c.model.backbone = "efficientnet_lite0"
  if trainable.endswith("@lenet"):
    c.model.backbone, trainable = "lenet", trainable.split("@")[0]
  c.model.trainable = trainable
  with pytest.raises(ValueError, match=f"config.model.trainable=.*{message}"):
    config_lib.validate(c)


def test_frozen_stages_count():
  c = load_config("test").unlock()
  c.model.backbone = "efficientnet_lite0"
  for trainable, frozen in (("all", 0), ("head", 9), ("2", 7), ("9", 0)):
    c.model.trainable = trainable
    assert config_lib.frozen_stages(c) == frozen


def _prefix(images, flip):
  x = images.astype(np.float32).mean(axis=-1)
  return np.where(flip[:, None, None], x[:, :, ::-1], x) * 1.5 + 0.25


def test_cache_resumes_after_a_kill_identical_and_recomputes_a_damaged_shard(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (37, 3, 4, 2), dtype=np.uint8)
  train = np.array([3, 5, 8, 13, 21])
  make = lambda d: feature_cache.FeatureCache(
    str(tmp_path / d), {"k": 1}, 37, train, shard_size=8, batch_size=3
  )
  make("whole").build(_prefix, images, io.StringIO())

  def kill(i):
    if i == 2:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    make("killed").build(_prefix, images, io.StringIO(), on_shard=kill)
  stream = io.StringIO()
  resumed = make("killed")
  resumed.build(_prefix, images, stream)
  assert "computing 3 of 6 shards" in stream.getvalue() and "3 kept" in stream.getvalue()
  whole, again = make("whole").load(), resumed.load()
  for a, b in zip(whole, again):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(whole[0], _prefix(images, np.zeros(37, bool)), rtol=1e-3)
  np.testing.assert_allclose(whole[1], _prefix(images[train], np.ones(5, bool)), rtol=1e-3)

  shard = resumed.directory + "/shard-00004.npy"
  with open(shard, "r+b") as f:
    f.seek(-1, 2)
    f.write(b"\x01")
  stream = io.StringIO()
  resumed.build(_prefix, images, stream)
  assert stream.getvalue().count("\n") == 2 and "shard 4 of" in stream.getvalue()
  np.testing.assert_array_equal(resumed.load()[0], whole[0])
  assert (
    make("other").directory
    != feature_cache.FeatureCache(str(tmp_path / "other"), {"k": 2}, 37, train).directory
  )  # another key, another cache


def test_frozen_prefix_gets_no_update_and_batch_stats_train(tiny, tmp_path):
  exp = experiment.build_experiment(tiny_config(steps=3))
  state = trainer.train(exp, str(tmp_path / "run"), stream=io.StringIO())
  first = experiment.initial_state(exp, model_state.make_tx(exp.config, exp.model, 3)[0])
  p0, p1 = first.params["backbone"], state.params["backbone"]
  s0, s1 = first.batch_stats["backbone"], state.batch_stats["backbone"]
  jax.tree.map(
    np.testing.assert_array_equal,
    (p1["conv"], p1["bn0"], s1["bn0"]),
    (p0["conv"], p0["bn0"], s0["bn0"]),
  )
  assert not np.allclose(p1["fc"]["kernel"], p0["fc"]["kernel"])
  assert not np.allclose(s1["bn1"]["mean"], s0["bn1"]["mean"])
  assert jax.tree.leaves(state.opt_state) and all(  # no optimizer state for frozen parameters
    leaf.shape != p0["conv"]["kernel"].shape for leaf in jax.tree.leaves(state.opt_state)
  )

  frozen = experiment.build_experiment(tiny_config(steps=3, freeze=True))
  state = trainer.train(frozen, str(tmp_path / "frozen_bn"), stream=io.StringIO())
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats["backbone"], s0)


def test_run_killed_while_caching_and_while_training_ends_identical(tiny, tmp_path, monkeypatch):
  config = tiny_config(steps=4)
  whole = trainer.train_and_evaluate(config, str(tmp_path / "whole"), stream=io.StringIO())
  workdir = str(tmp_path / "killed")

  def kill_cache(i):
    if i == 1:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    trainer.train(experiment.build_experiment(config), workdir, io.StringIO(), on_shard=kill_cache)

  save = Checkpointer.save

  def kill_after_two(self, step, state):
    save(self, step, state)
    if step == 2:
      raise KeyboardInterrupt

  monkeypatch.setattr(Checkpointer, "save", kill_after_two)
  with pytest.raises(KeyboardInterrupt):
    trainer.train(experiment.build_experiment(config), workdir, io.StringIO())
  monkeypatch.setattr(Checkpointer, "save", save)
  stream = io.StringIO()
  resumed = trainer.train_and_evaluate(config, workdir, stream=stream)
  assert "resuming" in stream.getvalue() and "from step 2" in stream.getvalue()
  assert resumed["step"] == whole["step"] == 4
  assert resumed["codes"] == whole["codes"]


def test_cached_flips_follow_data_flip_and_a_cache_without_them_serves_every_split(tiny, tmp_path):
  cache_dir = str(tmp_path / "features")

  def run(name, flip, other_split=False):
    config = tiny_config(steps=2).unlock()
    config.data.flip, config.data.feature_cache_dir = flip, cache_dir
    exp = experiment.build_experiment(config.lock())
    if other_split:  # the same images and weights, another training set
      exp = dataclasses.replace(
        exp, split=dataclasses.replace(exp.split, train=exp.split.train[1:])
      )
    trainer.train(exp, str(tmp_path / name), stream=io.StringIO())
    return exp

  run("plain", False)
  run("other_split", False, other_split=True)
  keys = sorted(os.listdir(cache_dir))
  assert len(keys) == 1  # the second split reused the first one's cache
  flipped = run("flipped", True)
  assert len(os.listdir(cache_dir)) == 2
  state = experiment.restore_trained(flipped, str(tmp_path / "flipped"))
  plain, flips = frozen_prefix.cached_features(
    flipped, str(tmp_path / "flipped"), state, io.StringIO()
  )
  assert len(plain) == len(flipped.dataset.labels) and len(flips) == len(flipped.split.train)
  with open(os.path.join(cache_dir, keys[0], "manifest.json")) as f:
    assert json.load(f)["num_shards"] == -(-len(plain) // 2048)  # no flipped rows


def test_a_run_directory_as_init_weights_starts_from_its_trained_backbone(tiny, tmp_path):
  """Fine-tune once, then train heads on the frozen result (``model.init_weights=RUN``)."""
  source = str(tmp_path / "finetuned")
  tuned = trainer.train(experiment.build_experiment(tiny_config(steps=3)), source, io.StringIO())
  config = tiny_config(steps=2, trainable="head").unlock()
  config.model.init_weights = source
  exp = experiment.build_experiment(config.lock())
  first = experiment.initial_state(exp, model_state.make_tx(exp.config, exp.model, 2)[0])
  trained = trainer.train(exp, str(tmp_path / "head"), stream=io.StringIO())
  for state in (first, trained):  # starts from the fine-tuned backbone, which stays frozen
    jax.tree.map(np.testing.assert_array_equal, state.params["backbone"], tuned.params["backbone"])
    jax.tree.map(
      np.testing.assert_array_equal, state.batch_stats["backbone"], tuned.batch_stats["backbone"]
    )
  assert not np.allclose(
    jax.tree.leaves(trained.params["head"])[0], jax.tree.leaves(first.params["head"])[0]
  )


def test_a_run_of_another_backbone_as_init_weights_is_refused(tiny, tmp_path, monkeypatch):
  source = str(tmp_path / "finetuned")
  trainer.train(experiment.build_experiment(tiny_config(steps=1)), source, io.StringIO())
  monkeypatch.setitem(BACKBONES, "tiny_too", Tiny)
  config = tiny_config(steps=1).unlock()
  config.model.backbone, config.model.init_weights = "tiny_too", source
  exp = experiment.build_experiment(config.lock())
  with pytest.raises(UsageError, match="is a run of backbone 'tiny', not 'tiny_too'"):
    experiment.initial_state(exp, model_state.make_tx(exp.config, exp.model, 1)[0])
