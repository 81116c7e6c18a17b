"""jaxhash: deep learning to hash for image retrieval, in JAX (DLBHC and HashNet).

The public names below are imported on first use, so ``import jaxhash`` is cheap (no JAX start-up).

    import jaxhash
    config = jaxhash.load_config("configs/dlbhc_mnist.py")
    results = jaxhash.train_and_evaluate(config, "runs/my_run")
    hasher = jaxhash.load("runs/my_run")                 # the trained run, without its data
    index = jaxhash.HammingIndex(hasher.bits)
    index.add(hasher.encode(images), ids=paths)          # uint8 images or image paths
    distances, ids = index.search(hasher.encode(queries), k=10)
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
  "load": "jaxhash.hasher",
  "Hasher": "jaxhash.hasher",
  "load_config": "jaxhash.config_files",
  "build_index": "jaxhash.index",
  "find_images": "jaxhash.data.image_folder",
  "train_and_evaluate": "jaxhash.run.trainer",
  "build_experiment": "jaxhash.run.experiment",
  "restore_trained": "jaxhash.run.experiment",
  "base_config": "jaxhash.config",
  "get_method": "jaxhash.methods",
  "METHODS": "jaxhash.methods",
  "PROTOCOLS": "jaxhash.data.protocols",
  "pack_bits": "jaxhash.retrieval",
  "unpack_bits": "jaxhash.retrieval",
  "to_faiss_bytes": "jaxhash.retrieval",
  "from_faiss_bytes": "jaxhash.retrieval",
  "hamming_distances": "jaxhash.retrieval",
  "hamming_topk": "jaxhash.retrieval",
  "HammingIndex": "jaxhash.retrieval",
  "make_encoder": "jaxhash.encode",
  "encode_indices": "jaxhash.encode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'jaxhash' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_EXPORTS])
