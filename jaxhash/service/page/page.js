// The search page: choose or drop an image, see its nearest items; click one to search with it.
"use strict";
const $ = (id) => document.getElementById(id);

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function search(body, contentType, queryUrl) {
  $("query").src = queryUrl;
  const params = new URLSearchParams({ k: $("k").value, rerank: $("rerank").checked });
  status("searching…");
  const response = await fetch("/search?" + params, {
    method: "POST", body, headers: contentType ? { "Content-Type": contentType } : {} });
  const answer = await response.json();
  if (!response.ok) return status(answer.error, true);
  const results = Array.isArray(answer.results[0]) ? answer.results[0] : answer.results;
  show(results);
  status(`${results.length} results in ${answer.took_ms.toFixed(1)} ms (${answer.bits}-bit codes)`);
}

function show(results) {
  const list = $("results");
  list.replaceChildren(...results.map((r) => {
    const item = document.createElement("li");
    item.className = "result";
    item.dataset.id = r.id;
    item.dataset.path = r.path;
    item.dataset.distance = r.distance;
    item.title = `${r.path}\nclick to search with this image`;
    const image = document.createElement("img");
    image.src = `/items/${encodeURIComponent(r.id)}/image`;
    image.alt = r.path;
    const distance = document.createElement("div");
    distance.className = "distance";
    distance.textContent = `#${r.rank}  d = ${r.distance}`;
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = r.path.split("/").slice(-2).join("/");
    item.append(image, distance, path);
    item.addEventListener("click", () =>
      search(JSON.stringify({ ids: [r.id] }), "application/json", image.src));
    return item;
  }));
}

function searchFile(file) {
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  search(form, null, URL.createObjectURL(file)).catch((e) => status(String(e), true));
}

$("file").addEventListener("change", () => searchFile($("file").files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchFile(e.dataTransfer.files[0]);
});

fetch("/stats").then((r) => r.json()).then((s) => {
  $("about").textContent =
    `${s.items} items · ${s.bits}-bit ${s.method} codes · run ${s.run} (step ${s.step})`;
  $("rerank-label").hidden = !s.features;
});
