"""The search service as programs and people use it: the HTTP API through an HTTP client (ranked
as ``jaxhash.search --json`` ranks), every bad request refused with a 4xx JSON error, batching,
the writable index (and its restart after SIGKILL), and the web page in a real headless browser."""

import concurrent.futures
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from PIL import Image

from conftest import ROOT, run_main
from jaxhash.retrieval import HammingIndex

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from jaxhash import serve  # noqa: E402


def write_digits(folder, indices):
  """MNIST test digits (the embedded ones) as PNG files ``folder/<digit>/<i>.png``."""
  from jaxhash.data.sources import embedded_mnist

  mnist = embedded_mnist()
  paths = []
  for i in indices:
    (folder / str(mnist.labels[i].argmax())).mkdir(parents=True, exist_ok=True)
    paths.append(str(folder / str(mnist.labels[i].argmax()) / f"{i:05d}.png"))
    Image.fromarray(mnist.images[i, :, :, 0]).save(paths[-1])
  return paths


@pytest.fixture(scope="module")
def indexed(finished_run, tmp_path_factory):
  """``(index file, image paths)``: 48 digits indexed with features by ``jaxhash.index``."""
  folder = tmp_path_factory.mktemp("served")
  paths = write_digits(folder / "digits", range(48))
  out = str(folder / "digits.jhi")
  proc = run_main(
    "jaxhash.index",
    "--workdir",
    finished_run,
    "--images",
    str(folder / "digits"),
    "--out",
    out,
    "--features",
  )
  assert proc.returncode == 0, proc.stderr
  return out, paths


@pytest.fixture(scope="module")
def client(indexed):
  with TestClient(serve.make_app(indexed[0], max_body_mb=0.25)) as client:
    yield client


def cli_results(index, paths, *args):
  proc = run_main("jaxhash.search", "--index", index, *paths, "--json", *args)
  assert proc.returncode == 0, proc.stderr
  return [json.loads(line)["results"] for line in proc.stdout.splitlines()]


def without_ids(results):
  return [{key: r[key] for key in ("rank", "path", "distance")} for r in results]


def post_image(client, path, **params):
  with open(path, "rb") as f:
    return client.post("/search", params=params, files={"image": ("q.png", f, "image/png")})


def test_search_ranks_as_the_search_command(client, indexed):
  index, paths = indexed
  queries = paths[::6]
  for args, params in [
    (["-k", "5"], {"k": 5}),
    (["-k", "7", "--rerank"], {"k": 7, "rerank": "true"}),
    (["-k", "48", "--radius", "3"], {"k": 48, "radius": 3}),
  ]:
    expected = cli_results(index, queries, *args)
    for query, want in zip(queries, expected):
      answer = post_image(client, query, **params)
      assert answer.status_code == 200, answer.text
      body = answer.json()
      # The service's results keep their documented keys; search --rerank also prints the
      # feature distance it ranked by.
      assert without_ids(body["results"]) == without_ids(want)
      assert not any("feature_distance" in r for r in body["results"])
      assert body["bits"] == 16 and body["took_ms"] > 0
  raw = client.post("/search?k=5", content=open(queries[0], "rb").read())
  assert without_ids(raw.json()["results"]) == expected[0][:5]


def test_search_by_codes_and_by_ids(client, indexed):
  index, paths = indexed
  stored = HammingIndex.load(index)
  position = stored.ids.tolist().index(paths[3])
  by_image = post_image(client, paths[3], k=6).json()["results"]
  item_id = by_image[0]["id"]
  assert by_image[0]["path"] == paths[3]
  words = stored.codes[position].tolist()
  bits = [(words[0] >> i) & 1 for i in range(16)]
  for query in [{"ids": [item_id]}, {"codes": [words]}, {"codes": [bits]}]:
    answer = client.post("/search?k=6", json=query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == [by_image], query
  image = client.get(f"/items/{item_id}/image")
  assert image.status_code == 200 and image.content == open(paths[3], "rb").read()
  assert image.headers["content-type"] == "image/png"


def test_health_stats_page_and_openapi(client):
  assert client.get("/health").json() == {"status": "ok", "items": 48}
  stats = client.get("/stats").json()
  assert {"items", "bits", "run", "step", "uptime_s", "requests", "search_latency_ms"} <= set(stats)
  assert stats["items"] == 48 and stats["bits"] == 16
  page = client.get("/")
  assert page.status_code == 200 and "page.js" in page.text and "http" not in page.text.lower()
  assert 'fetch("/search' in client.get("/page.js").text
  described = client.get("/openapi.json").json()["paths"]
  assert {"/search", "/items/{item_id}/image", "/stats"} <= set(described)


def bomb_png() -> bytes:
  """A few kB of PNG declaring 64 million pixels."""
  buffer = io.BytesIO()
  Image.new("1", (8000, 8000)).save(buffer, format="PNG")
  return buffer.getvalue()


def bad_requests(path):
  png = open(path, "rb").read()
  image = lambda data: {"files": {"image": ("q.png", data, "image/png")}}  # noqa: E731
  typed = lambda body, kind: {"content": body, "headers": {"content-type": kind}}  # noqa: E731
  multipart = "multipart/form-data"
  return [
    ("POST", "/search", {"content": b"plain text, not an image"}, 400, "not an image"),
    ("POST", "/search", image(png[: len(png) // 2]), 400, "truncated"),
    ("POST", "/search", image(b"GIF89a\x01\x00\x01\x00" + b"\x00" * 20), 400, "image"),
    ("POST", "/search", image(bomb_png()), 400, "too large"),
    ("POST", "/search", {"content": b""}, 400, "empty"),
    ("POST", "/search", image(b""), 400, "empty"),
    ("POST", "/search", {"content": b"\x89PNG" + b"\x00" * 300_000}, 413, "limit"),
    ("POST", "/search", {"files": {"other": ("q.png", png, "image/png")}}, 400, "'image'"),
    (
      "POST",
      "/search",
      {"files": [("image", ("a.png", png)), ("image", ("b.png", png))]},
      400,
      "one image",
    ),
    ("POST", "/search", typed(b"--x\r\nbroken", multipart + "; boundary=y"), 400, "multipart"),
    ("POST", "/search", typed(b"x", multipart), 400, "boundary"),
    ("POST", "/search?k=0", image(png), 400, "k=0"),
    ("POST", "/search?k=1001", image(png), 400, "1 to 1000"),
    ("POST", "/search?k=ten", image(png), 400, "not an integer"),
    ("POST", "/search?radius=-1", image(png), 400, "radius"),
    ("POST", "/search?rerank=maybe", image(png), 400, "rerank"),
    ("POST", "/search", typed(b"{not json", "application/json"), 400, "JSON"),
    ("POST", "/search", {"json": {"codes": [[1, 0]]}}, 400, "16-bit"),
    ("POST", "/search", {"json": {"codes": [[2**33]]}}, 400, "uint32"),
    ("POST", "/search", {"json": {"ids": ["nope"]}}, 404, "no item"),
    ("POST", "/search", {"json": {"ids": []}}, 400, "non-empty"),
    ("POST", "/search?rerank=true", {"json": {"codes": [[0]]}}, 400, "rerank"),
    ("GET", "/search", {}, 405, "use POST"),
    ("PUT", "/health", {}, 405, "use GET"),
    ("GET", "/items/nope/image", {}, 404, "no item"),
    ("GET", "/items/%2e%2e/image", {}, 404, "no item"),
    ("GET", "/items/..%2F..%2Fetc%2Fpasswd/image", {}, 404, "no route"),
    ("GET", "/items/../../../etc/passwd", {}, 404, "no route"),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", {}, 404, "no route"),
    ("GET", "/page.js/../../../etc/passwd", {}, 404, "no route"),
    ("POST", "/items", image(png), 403, "--writable"),
    ("DELETE", "/items/nope", {}, 403, "--writable"),
  ]


def test_bad_requests_get_a_4xx_json_error_and_the_server_carries_on(client, indexed):
  _, paths = indexed
  before = post_image(client, paths[0], k=5).json()["results"]
  for method, url, kwargs, status, text in bad_requests(paths[0]):
    answer = client.request(method, url, **kwargs)
    assert answer.status_code == status, (method, url, answer.text)
    error = answer.json()["error"]
    assert text in error and "\n" not in error and "Traceback" not in error, (url, error)
  assert client.get("/health").status_code == 200
  assert post_image(client, paths[0], k=5).json()["results"] == before


def test_concurrent_queries_run_as_one_batch(indexed, finished_run):
  """Queries queued together are encoded and searched together, each ranked as alone."""
  from jaxhash.search import hasher_for, search_images
  from jaxhash.service.catalog import Catalog
  from jaxhash.service.engine import Engine

  index, paths = indexed
  catalog = Catalog(index)
  hasher = hasher_for(catalog.index)
  engine = Engine(hasher, catalog, window=0.5)
  images = [hasher.read_image(p) for p in paths[:11]]
  queries = [(image, 1 + i % 9, None if i % 3 else 4, i % 4 == 0) for i, image in enumerate(images)]
  futures = [engine.search_image(*query) for query in queries]  # queued before the worker starts
  engine.start()
  try:
    for (image, k, radius, rerank), future in zip(queries, futures):
      alone = search_images(catalog.index, hasher, image[None], k, radius, rerank)[0]
      assert without_ids(future.result(timeout=60)) == alone
  finally:
    engine.stop()
  assert engine.stats.batches == 1 and engine.stats.batched == 11


def test_writable_adds_and_deletes_are_saved(indexed, tmp_path):
  index = str(tmp_path / "copy.jhi")
  shutil.copy(indexed[0], index)
  new = write_digits(tmp_path / "new", [100, 101, 102])
  with TestClient(serve.make_app(index, writable=True)) as client:
    files = [("image", (os.path.basename(p), open(p, "rb").read(), "image/png")) for p in new[:2]]
    added = client.post("/items", files=files, data={"id": ["first", "second"]})
    assert added.status_code == 201, added.text
    assert [a["id"] for a in added.json()["added"]] == ["first", "second"]
    assert added.json()["items"] == 50
    raw = client.post("/items", content=open(new[2], "rb").read())
    assert raw.status_code == 201 and len(raw.json()["added"][0]["id"]) == 16
    assert client.get("/items/first/image").content == open(new[0], "rb").read()
    found = post_image(client, new[0], k=50).json()["results"]
    assert "first" in [r["id"] for r in found if r["distance"] == 0]
    again = client.post("/items?id=first", content=open(new[1], "rb").read())
    assert again.status_code == 409 and "already taken" in again.json()["error"]
    bad = client.post("/items?id=../../etc/x", content=open(new[1], "rb").read())
    assert bad.status_code == 400 and "not allowed" in bad.json()["error"]
    assert client.post("/items", files={"image": ("x.png", b"not an image")}).status_code == 400
    stored = client.get("/items/second/image")
    assert client.delete("/items/second").json() == {"deleted": "second", "items": 50}
    assert client.delete("/items/second").status_code == 404
    assert stored.status_code == 200 and client.get("/items/second/image").status_code == 404
  saved = HammingIndex.load(index)
  assert len(saved) == 50 and os.path.join(str(tmp_path / "copy.items"), "first.png") in saved.ids
  assert not os.path.exists(tmp_path / "copy.items" / "second.png")
  assert cli_results(index, new[:1], "-k", "1")[0][0]["distance"] == 0
  with pytest.raises(ValueError, match="another --writable server"):
    with TestClient(serve.make_app(index, writable=True)):
      serve.make_app(index, writable=True)


def test_importing_jaxhash_does_not_import_the_server_stack():
  code = (
    "import sys, jaxhash, jaxhash.search, jaxhash.index; jaxhash.HammingIndex; "
    "print([m for m in sys.modules "
    "       if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')])"
  )
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_command_errors_are_one_line(indexed, tmp_path):
  usage = run_main("jaxhash.serve", "--help")
  assert usage.returncode == 0 and all(
    f in usage.stdout for f in ("--index", "--writable", "--host")
  )
  proc = run_main("jaxhash.serve", "--index", str(tmp_path / "missing.jhi"))
  assert proc.returncode == 1 and "missing.jhi not found" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    proc = run_main("jaxhash.serve", "--index", indexed[0], "--port", str(taken.getsockname()[1]))
  assert proc.returncode == 1 and "cannot listen on 127.0.0.1" in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  proc = run_main("jaxhash.serve", "--index", indexed[0], "--workdir", str(tmp_path), "--port", "0")
  assert proc.returncode == 1 and "config.json" in proc.stderr, proc.stderr


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def request(port, method, path, body=None, timeout=30):
  """The JSON answer; a dict ``body`` is sent as JSON, bytes as they are."""
  headers = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
  data = json.dumps(body).encode() if isinstance(body, dict) else body
  call = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
  with urllib.request.urlopen(call, timeout=timeout) as answer:
    return json.load(answer)


def start_server(index, port, *args):
  server = subprocess.Popen(
    [sys.executable, "-m", "jaxhash.serve", "--index", index, "--port", str(port), *args],
    cwd=ROOT,
    env={**os.environ, "PYTHONPATH": ROOT},
    stderr=subprocess.PIPE,
    text=True,
  )
  for _ in range(600):
    assert server.poll() is None, server.stderr.read()
    try:
      request(port, "GET", "/health")
      return server
    except OSError:
      time.sleep(0.2)
  server.kill()
  raise AssertionError("the server did not start")


@pytest.mark.slow
def test_sigkill_during_adds_keeps_every_acknowledged_image(indexed, tmp_path):
  """100 images added one request at a time while a client searches; SIGKILL during the adds."""
  index = str(tmp_path / "copy.jhi")
  shutil.copy(indexed[0], index)
  images = write_digits(tmp_path / "new", range(200, 300))
  port = free_port()
  server = start_server(index, port, "--writable")
  acknowledged, searches, stop = [], [], threading.Event()

  def search():
    while not stop.is_set():
      try:
        answer = request(port, "POST", "/search?k=3", open(images[0], "rb").read())
        searches.append(len(answer["results"]))
      except OSError:
        return

  def add():
    for i, path in enumerate(images):
      try:
        answer = request(port, "POST", f"/items?id=new{i}", open(path, "rb").read())
      except OSError:
        return
      acknowledged.append(answer["added"][0]["id"])

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    pool.submit(search)
    adder = pool.submit(add)
    while len(acknowledged) < 40:
      assert not adder.done(), adder.result()
      time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
  assert searches and set(searches) == {3}
  assert 40 <= len(acknowledged) < 100
  saved = HammingIndex.load(index)  # a whole file, never a torn one
  port = free_port()
  server = start_server(index, port, "--writable")
  try:
    items = request(port, "GET", "/stats")["items"]
    assert items - 48 in (len(acknowledged), len(acknowledged) + 1) and items == len(saved)
    for item_id in acknowledged:
      assert request(port, "POST", "/search?k=1", {"ids": [item_id]})["results"][0]
  finally:
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=60) == 0
  print(
    f"acknowledged before SIGKILL: {len(acknowledged)}; items after restart: {items - 48} added"
  )


BROWSER = ("/usr/bin/chromium", "/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path):
  if not all(os.path.exists(path) for path in BROWSER):
    pytest.skip(
      "Debian's chromium and chromium-driver are not installed (apt-get install chromium "
      "chromium-driver; .ci/run installs them)"
    )
  webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
  options = webdriver.ChromeOptions()
  options.binary_location = BROWSER[0]
  for flag in (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,800",
    f"--user-data-dir={tmp_path / 'chromium'}",
  ):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=webdriver.ChromeService(BROWSER[1]), options=options)
  yield driver
  driver.quit()


@pytest.fixture
def live_server(indexed):
  """The app under uvicorn on a free loopback port, in a thread: its URL."""
  import uvicorn

  server = uvicorn.Server(uvicorn.Config(serve.make_app(indexed[0]), log_level="warning"))
  sock = serve._listen("127.0.0.1", 0)
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  while not server.started:
    time.sleep(0.05)
  yield f"http://127.0.0.1:{sock.getsockname()[1]}"
  server.should_exit = True
  thread.join()


def test_browser_page_shows_the_api_results(browser, live_server, indexed, tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  _, paths = indexed
  query = paths[5]
  browser.get(live_server + "/")
  WebDriverWait(browser, 30).until(lambda d: "items" in d.find_element(By.ID, "about").text)
  k = browser.find_element(By.ID, "k")
  k.clear()
  k.send_keys("8")
  browser.find_element(By.ID, "file").send_keys(query)

  def shown(driver):
    """The grid as ``(id, path, distance)`` once its 8 images have loaded (read in one script, as
    the page may redraw it meanwhile), else None."""
    cells = driver.execute_script("""
        const cells = [...document.querySelectorAll('.result')];
        const loaded = cells.every(c => c.querySelector('img').complete &&
                                        c.querySelector('img').naturalWidth > 0);
        return loaded ? cells.map(c => [c.dataset.id, c.dataset.path, c.dataset.distance])
                      : null;""")
    return [(i, p, int(d)) for i, p, d in cells] if cells and len(cells) == 8 else None

  grid = WebDriverWait(browser, 60).until(shown)
  with open(query, "rb") as f:
    api = urllib.request.urlopen(
      urllib.request.Request(live_server + "/search?k=8", data=f.read(), method="POST"), timeout=30
    )
  assert grid == [(r["id"], r["path"], r["distance"]) for r in json.load(api)["results"]]
  browser.save_screenshot(str(tmp_path / "search_page.png"))
  print(f"screenshot: {tmp_path / 'search_page.png'}")

  browser.find_elements(By.CSS_SELECTOR, ".result")[3].click()  # search with a result
  clicked = grid[3][0]
  api = urllib.request.urlopen(
    urllib.request.Request(
      live_server + "/search?k=8",
      data=json.dumps({"ids": [clicked]}).encode(),
      method="POST",
      headers={"Content-Type": "application/json"},
    ),
    timeout=30,
  )
  expected = [(r["id"], r["path"], r["distance"]) for r in json.load(api)["results"][0]]
  WebDriverWait(browser, 60).until(lambda d: shown(d) == expected)
