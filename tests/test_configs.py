"""Every config file loads, validates, locks, and documents its run command."""

import glob
import os

import pytest

from conftest import CONFIGS, load_config
from jaxhash import config as config_lib

NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIGS, "*.py")))


@pytest.mark.parametrize("name", NAMES)
def test_config_validates_and_is_locked(name):
  config = load_config(name)
  config_lib.validate(config)
  assert config.is_locked
  with pytest.raises(AttributeError):
    config.train.no_such_key = 1
  module_doc = open(os.path.join(CONFIGS, f"{name}.py")).read()
  assert f"python -m jaxhash.train --config configs/{name}.py" in module_doc


def test_bits_variant_and_bad_variant():
  assert load_config("dlbhc_mnist", "full,bits=64").method.bits == 64
  assert load_config("dlbhc_mnist", "full").data.protocol == "mnist"
  with pytest.raises(ValueError, match="unknown config variant or setting .ful."):
    load_config("dlbhc_mnist", "ful")


@pytest.mark.parametrize("bits", [0, 7, 1025])
def test_bits_out_of_range_is_rejected(bits):
  config = load_config("test").unlock()
  config.method.bits = bits
  with pytest.raises(ValueError, match=f"config.method.bits={bits} is not a valid code length"):
    config_lib.validate(config)


def test_package_exports_resolve_lazily():
  import subprocess
  import sys

  code = (
    "import sys, jaxhash; assert 'jax' not in sys.modules; "
    "[getattr(jaxhash, n) for n in jaxhash.__all__]; print('ok')"
  )
  assert (
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    == "ok"
  )


def test_a_key_and_its_comment_stay_on_one_line():
  """--help shows the comment beside ``c.key = value`` as the key's meaning: a statement wrapped
  over several lines (as a formatter does to a line over 100 columns) would lose it."""
  import inspect
  import re

  from jaxhash import usage

  source = inspect.getsource(config_lib.base_config)
  assert not re.findall(r"^\s*c\.[\w.]+\s*=\s*[(\[{]$", source, re.M)
  docs = usage.key_docs()
  for key in ("data.feature_cache_dir", "model.init_weights", "train.skip_nonfinite"):
    assert docs[key]
