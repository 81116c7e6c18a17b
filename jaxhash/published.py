"""Figures the two papers published, with the protocol, R and mAP convention each one assumes.

Besides DLBHC's and HashNet's own figures, the shallow baselines their tables print (LSH, SH, ITQ,
ITQ-CCA on CIFAR-10), with the features those were fitted on: context for jaxhash's shallow
methods on deep features, not a target.

``python -m jaxhash.report`` prints a published figure beside a run's only where the run used the
same protocol (query / database split), code length and R. Matching protocols is not enough for a
like-for-like comparison: the backbone, its ImageNet weights and the training budget differ, and
``convention`` says whose mAP definition the figure used:

- ``"jaxhash"``: every query counts; a query with no relevant item in the top R has AP 0. DLBHC's
  released MATLAB code (``analysis/precision.m``) computes it so (with a stable sort, so ties go
  by database index as in jaxhash).
- ``"hashnet"``: HashNet's released evaluation (``models/predict/imagenet/predict_parallel.py``)
  leaves out queries with no relevant item in the top R; results.json calls this
  ``hashnet_map@R``. (The NUS-WIDE script under ``caffe/`` in the same repository instead leaves
  out queries with no relevant item in the whole database; its ranking is ``np.argsort``, whose
  tie order is not by database index.)
"""

from __future__ import annotations

import dataclasses

SOURCES = {
  "dlbhc": "K. Lin, H.-F. Yang, J.-H. Hsiao, C.-S. Chen, Deep Learning of Binary Hash Codes for "
  "Fast Image Retrieval, CVPR 2015 Workshops",
  "dlbhc-repo": "DLBHC's code release, github.com/kevinlin311tw/caffe-cvprw15, README 'CIFAR10 "
  "retrieval results' (mAP of the top 1000 returned images)",
  "hashnet": "Z. Cao, M. Long, J. Wang, P. S. Yu, HashNet: Deep Learning to Hash by "
  "Continuation, ICCV 2017, Table 1 (mAP of Hamming ranking)",
  "cnnh-cited": "R. Xia, Y. Pan, H. Lai, C. Liu, S. Yan, Supervised Hashing for Image Retrieval "
  "via Image Representation Learning (CNNH), AAAI 2014, as DLBHC's CIFAR-10 table "
  "and later papers reprint it",
}


@dataclasses.dataclass(frozen=True)
class Published:
  method: str  # jaxhash method name
  protocol: str  # the jaxhash protocol with the same query / database split
  bits: int
  map_at: int | str | None  # R of mAP@R; None where the source does not state it
  value: float  # a fraction, as results.json holds it
  convention: str  # "jaxhash" or "hashnet" (see the module docstring)
  source: str  # a key of SOURCES
  checked: str  # how the figure was checked for this table
  features: str = ""  # a shallow method's input features; "" for a network trained end to end


_DLBHC_CIFAR = "checked against the DLBHC repository's README table"
_HASHNET_48 = "not checked against a copy of the paper"
_HASHNET_OTHER = (
  "from the paper's table, not checked against a copy of the paper (Lu et al., "
  "Advances in Multimedia 2017, Table 3, quotes HashNet ImageNet as 0.442 / 0.606 "
  "/ 0.663 / 0.684 at 16 / 32 / 48 / 64 bits)"
)
_DLBHC_MNIST = "not checked against a copy of the paper"

# The shallow baselines of DLBHC's CIFAR-10 table (first published by CNNH, Xia et al., AAAI 2014,
# which was not read here). 1,000 queries, as in protocol cifar10; R is not stated consistently.
_SHALLOW_CIFAR = (
  "the DLBHC README's table (read here) prints LSH and ITQ-CCA at 12 / 32 / 48 "
  "bits; Lu et al., Advances in Multimedia 2017, Table 3 (read here) prints the "
  "same and all four at 12 / 24 / 32 / 48 bits. The README calls its figures mAP "
  "of the top 1000 returned images, Lu et al.'s caption says top 5000: R is left "
  "unstated. Whether the database held the training images is not stated"
)
_GIST = "512-d GIST (as the citing papers state)"

FIGURES = (
  # DLBHC MNIST: 10,000 test queries against the 60,000 training images (jaxhash protocol mnist).
  Published("dlbhc", "mnist", 48, None, 0.985, "jaxhash", "dlbhc", _DLBHC_MNIST),
  # DLBHC CIFAR-10: 10,000 test queries against the 50,000 training images (cifar10-2).
  Published("dlbhc", "cifar10-2", 12, 1000, 0.8930, "jaxhash", "dlbhc-repo", _DLBHC_CIFAR),
  Published("dlbhc", "cifar10-2", 32, 1000, 0.8972, "jaxhash", "dlbhc-repo", _DLBHC_CIFAR),
  Published("dlbhc", "cifar10-2", 48, 1000, 0.8973, "jaxhash", "dlbhc-repo", _DLBHC_CIFAR),
  # HashNet, AlexNet from ImageNet weights, the released list files.
  *(
    Published(
      "hashnet",
      protocol,
      bits,
      r,
      value,
      "hashnet",
      "hashnet",
      _HASHNET_48 if bits == 48 else _HASHNET_OTHER,
    )
    for protocol, r, values in (
      ("imagenet100", 1000, (0.5059, 0.6306, 0.6633, 0.6835)),
      ("nuswide", 5000, (0.6623, 0.6988, 0.7114, 0.7163)),
      ("coco", 5000, (0.6873, 0.7184, 0.7301, 0.7362)),
    )
    for bits, value in zip((16, 32, 48, 64), values)
  ),
  *(
    Published(method, "cifar10", bits, None, value, "jaxhash", "cnnh-cited", _SHALLOW_CIFAR, _GIST)
    for method, values in (
      ("lsh", (0.121, 0.126, 0.120, 0.120)),
      ("sh", (0.131, 0.135, 0.133, 0.130)),
      ("itq", (0.162, 0.169, 0.172, 0.175)),
      ("itq_cca", (0.264, 0.282, 0.288, 0.295)),
    )
    for bits, value in zip((12, 24, 32, 48), values)
  ),
)


def matching(method: str, protocol: str, bits: int, map_at) -> list[Published]:
  """The published figures for mAP@``map_at`` of ``method`` on ``protocol`` at ``bits``.

  A figure whose R the source does not state is matched to mAP@all only, and says so.
  """
  return [
    f
    for f in FIGURES
    if (f.method, f.protocol, f.bits) == (method, protocol, bits)
    and (f.map_at == map_at or (f.map_at is None and map_at == "all"))
  ]


def describe(figure: Published) -> str:
  """One line: the figure, what it measures, whose convention, where it is from."""
  r = "R not stated by the source" if figure.map_at is None else f"mAP@{figure.map_at}"
  convention = (
    "queries with no relevant item in the top R left out"
    if figure.convention == "hashnet"
    else "every query counts"
  )
  features = f"; features: {figure.features}" if figure.features else ""
  return (
    f"{figure.value:.4f} ({r}; {convention}{features}): {SOURCES[figure.source]}; {figure.checked}"
  )
