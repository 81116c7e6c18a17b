"""The config schema shared by every ``configs/*.py`` file, and its validation.

``base_config(method)`` returns a ConfigDict with every key a run reads and its default; config
files override what differs and lock it, so a mistyped key on the command line is an error.
``validate`` checks values before anything touches the workdir.
"""

from __future__ import annotations

import os

import ml_collections

from jaxhash.data import protocols
from jaxhash.data.loader import SOURCES
from jaxhash.errors import UsageError
from jaxhash.methods import get_method
from jaxhash.models import BACKBONES
from jaxhash.retrieval.codes import check_nbits
from jaxhash.run import optim


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = ""  # run name; workdir defaults to runs/<name>
  c.seed = 0
  c.method = get_method(method).defaults()

  c.data = ml_collections.ConfigDict()
  c.data.protocol = "mnist10k"  # see jaxhash.data.protocols.PROTOCOLS
  c.data.source = "auto"  # auto | embedded | idx | tfds | listfile | imagefolder
  c.data.dir = ""  # IDX directory, list-file directory, or image folder (root/<class>/*)
  c.data.image_root = ""  # list files: root of relative image paths (default: data.dir)
  c.data.tfds_data_dir = ""  # tfds: its data_dir (default: TFDS's own)
  c.data.limit = 0  # only the first N images of each source group (as TFDS's "test[:N]"); 0 = all
  c.data.image_size = 0  # decode-time resize of list-file images; 0 keeps the native size
  c.data.crop = 0  # random crop (train) / centre crop (eval) to this size; 0 = none
  c.data.pad = 0  # zero padding before a random crop of small images
  c.data.flip = False  # random horizontal flips in training
  c.data.mean = (0.5,)  # per-channel normalisation of [0, 1] pixels
  c.data.std = (0.5,)
  c.data.feature_cache_dir = ""  # frozen-prefix activations (default <workdir>/features); shareable
  c.data.query_fraction = 0.1  # protocol custom, one image set: the share drawn as queries ...
  c.data.train_fraction = 1.0  # ... and the share of the rest (the database) that trains

  c.model = ml_collections.ConfigDict()
  c.model.backbone = "lenet"
  c.model.init_weights = ""  # backbone weights: .pth/.npz/.safetensors, packaged name, or a run dir
  c.model.trainable = "all"  # all | head | N (the last N stages); the frozen prefix is cached
  c.model.freeze_batch_norm = False  # keep batch-norm statistics fixed (small fine-tuning batches)
  c.model.dtype = "float32"  # float32 | bfloat16: the backbone's activations

  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = "sgd"  # sgd | adam
  c.optim.learning_rate = 0.01
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 5e-4
  c.optim.head_lr_multiplier = 10.0  # new layers (the method's head) learn this much faster
  c.optim.schedule = "step"  # constant | step | cosine
  c.optim.decay_every = 0  # step schedule: multiply the rate by decay_factor every this many steps
  c.optim.decay_factor = 0.1

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.num_epochs = 10.0  # used when num_steps is 0
  c.train.num_steps = 0
  c.train.checkpoint_every = 500
  c.train.log_every = 50
  # Calls end at log and checkpoint steps: keep those multiples of it, for one compiled call.
  c.train.steps_per_call = 10  # training steps per executable call when the images are in memory
  c.train.skip_nonfinite = False  # skip (and count) steps with a non-finite loss/update; else stop

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 500
  c.eval.map_at = ""  # comma-separated R values, e.g. "all,1000"; empty = the protocol's defaults
  c.eval.precision_at = "1,10,100,1000"
  c.eval.radius = 2
  c.eval.rerank = True  # also report coarse-to-fine (re-ranked by fc7 distance)
  c.eval.rerank_pool = 1000  # candidate pool: the m nearest codes ...
  c.eval.rerank_radius = -1  # ... or, when >= 0, all codes within this Hamming radius
  c.eval.classifier_baseline = False  # also rank by predicted class: a classifier baseline (dlbhc)
  c.eval.plots = True  # draw RUN/plots/*.png after evaluating (python -m jaxhash.plots redraws)
  return c


def parse_int_list(text: str, key: str, allow_all: bool = False) -> tuple:
  """``"all,1000"`` -> ``("all", 1000)``; errors name the config key."""
  values = []
  for token in (t.strip() for t in str(text).split(",") if t.strip()):
    if allow_all and token == "all":
      values.append("all")
    elif token.isdigit() and int(token) > 0:
      values.append(int(token))
    else:
      raise UsageError(
        f"config.{key}={text!r}: {token!r} is not a positive integer"
        f"{' or all' if allow_all else ''}."
      )
  return tuple(values)


def map_at(config) -> tuple:
  if config.eval.map_at:
    return parse_int_list(config.eval.map_at, "eval.map_at", allow_all=True)
  return protocols.get_protocol(config.data.protocol).map_at


# Where the data is, not what it is: stored absolute, and a change is accepted where the split's
# fingerprint shows the same data (jaxhash.run.rundir, jaxhash.evaluate).
DATA_LOCATIONS = ("dir", "image_root", "tfds_data_dir", "feature_cache_dir")


def with_absolute_paths(config):
  """A copy of ``config`` whose ``data`` locations and weights path are absolute (``~`` expanded),
  so that the run's ``config.json`` finds them from any working directory."""
  config = config.copy_and_resolve_references()
  for key in DATA_LOCATIONS:
    if config.data[key]:
      config.data[key] = os.path.abspath(os.path.expanduser(config.data[key]))
  weights = os.path.expanduser(config.model.init_weights)
  if os.path.exists(weights):  # a file or a run directory, not a packaged name
    config.model.init_weights = os.path.abspath(weights)
  return config


def validate(config) -> None:
  """Raises ValueError naming the first bad config key and what would be valid."""
  get_method(config.method.name).validate(config.method)
  try:
    check_nbits(config.method.bits)
  except UsageError as e:
    raise UsageError(f"config.method.{e}") from None
  protocols.get_protocol(config.data.protocol).validate(config.data)
  if config.data.source not in SOURCES:
    raise UsageError(f"config.data.source={config.data.source!r}: use one of {', '.join(SOURCES)}.")
  if config.model.backbone not in BACKBONES:
    raise UsageError(
      f"config.model.backbone={config.model.backbone!r}: choose one of {sorted(BACKBONES)}."
    )
  frozen_stages(config)
  if (
    get_method(config.method.name).fit is not None and str(config.model.trainable).strip() != "head"
  ):
    raise UsageError(
      f"config.model.trainable={config.model.trainable!r}: {config.method.name} is "
      "fitted on the frozen backbone's features, not trained; use trainable=head."
    )
  if config.model.dtype not in ("float32", "bfloat16"):
    raise UsageError(f"config.model.dtype={config.model.dtype!r}: use float32 or bfloat16.")
  optim.check_names(config.optim)
  _check_ranges(config)
  parse_int_list(config.eval.precision_at, "eval.precision_at")
  map_at(config)
  if config.eval.classifier_baseline and not get_method(config.method.name).classifies:
    raise UsageError(
      f"config.eval.classifier_baseline=True needs a method with a classifier head "
      f"(dlbhc); {config.method.name} has none: set it to False."
    )


def frozen_stages(config) -> int:
  """How many leading backbone stages ``config.model.trainable`` freezes (0 for ``all``)."""
  value, backbone = config.model.trainable, config.model.backbone
  text = str(value).strip()
  if text == "all":
    return 0
  stages = getattr(BACKBONES.get(backbone), "STAGES", None)
  if text != "head" and not (text.isdigit() and int(text) > 0):
    raise UsageError(
      f"config.model.trainable={value!r}: use all, head, or a number N > 0 of last stages to train."
    )
  if stages is None:
    raise UsageError(
      f"config.model.trainable={value!r} needs a backbone with stages; "
      f"{backbone!r} has none: use trainable=all."
    )
  if text == "head":
    return len(stages)
  if int(text) > len(stages):
    raise UsageError(
      f"config.model.trainable={value!r}: {backbone} has only {len(stages)} stages "
      f"({', '.join(stages)})."
    )
  return len(stages) - int(text)


# (key, lowest allowed, whether the lowest itself is allowed, what the value means when it matters)
_RANGES = (
  ("seed", 0, True, ""),
  ("data.limit", 0, True, " (0 = every image)"),
  ("data.image_size", 0, True, " (0 keeps the native size)"),
  ("data.crop", 0, True, " (0 = no crop)"),
  ("data.pad", 0, True, ""),
  ("optim.learning_rate", 0, False, ""),
  ("optim.momentum", 0, True, " (0 = plain SGD)"),
  ("optim.weight_decay", 0, True, ""),
  ("optim.head_lr_multiplier", 0, False, ""),
  ("optim.decay_every", 0, True, " (0 = a third of the training)"),
  ("optim.decay_factor", 0, False, ""),
  ("train.batch_size", 0, False, ""),
  ("train.num_steps", 0, True, " (0 = use train.num_epochs)"),
  ("train.num_epochs", 0, True, ""),
  ("train.checkpoint_every", 0, False, ""),
  ("train.log_every", 0, False, ""),
  ("train.steps_per_call", 0, False, ""),
  ("eval.batch_size", 0, False, ""),
  ("eval.radius", 0, True, ""),
  ("eval.rerank_pool", 0, False, ""),
  ("eval.rerank_radius", -1, True, " (-1 = use eval.rerank_pool)"),
)


def _check_ranges(config) -> None:
  """Every numeric setting in its range, with a message that says which range."""
  for key, low, inclusive, meaning in _RANGES:
    section, _, name = key.rpartition(".")
    value = (config[section] if section else config)[name]
    if (
      isinstance(value, bool)
      or not isinstance(value, (int, float))
      or value != value
      or value in (float("inf"), float("-inf"))
    ):
      raise UsageError(f"config.{key}={value!r} is not a finite number.")
    if value < low or (value == low and not inclusive):
      raise UsageError(
        f"config.{key}={value!r} must be {'>=' if inclusive else '>'} {low}{meaning}."
      )
  if config.optim.momentum >= 1:
    raise UsageError(f"config.optim.momentum={config.optim.momentum!r} must be below 1.")
  if config.train.num_steps == 0 and config.train.num_epochs == 0:
    raise UsageError(
      "config.train.num_steps and config.train.num_epochs are both 0: set one of them."
    )
  if config.data.crop and config.data.image_size and config.data.crop > config.data.image_size:
    raise UsageError(
      f"config.data.crop={config.data.crop} is larger than "
      f"config.data.image_size={config.data.image_size}."
    )
  mean, std = tuple(config.data.mean), tuple(config.data.std)
  if not mean or len(mean) != len(std):
    raise UsageError(
      f"config.data.mean={mean} and config.data.std={std} need one value per channel each."
    )
  if not all(isinstance(v, (int, float)) and v > 0 for v in std):
    raise UsageError(f"config.data.std={std} must be positive.")
