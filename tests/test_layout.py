"""The package's layout: no import circle among jaxhash's modules.

Every import counts, at module level or inside a function: a lazy import that closes a circle only
hides it, and the two modules still cannot be understood (or moved) one without the other."""

import ast
import os

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "jaxhash")


def _modules():
  """Maps each module name under jaxhash/ to its file (a package to its __init__.py)."""
  modules = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith(".py"):
        continue
      parts = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
      if parts[-1] == "__init__":
        parts.pop()
      modules[".".join(parts)] = os.path.join(folder, name)
  return modules


def _imports(module, path, modules):
  """The jaxhash modules that `module` imports anywhere in its file: for `from P import n`, the
  submodule P.n when there is one, else P itself."""
  is_package = path.endswith("__init__.py")
  with open(path) as f:
    source = f.read()
  try:
    tree = ast.parse(source, path)
  except SystemError:  # "AST constructor recursion depth mismatch": CPython 3.11's AST builder
    tree = ast.parse(source, path)  # miscounts now and then (python/cpython#106905); parse again
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = module.split(".")
        package = package[: len(package) - node.level + is_package]
        base = ".".join(package + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  return {name for name in found if name in modules and name != module}


def _cycle(graph):
  """One cycle of `graph` as a list of nodes (first == last), or None when it is acyclic."""
  state = {}  # node -> 1 while on the stack, 2 when done
  stack = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for succ in sorted(graph[node]):
      if state.get(succ) == 1:
        return stack[stack.index(succ) :] + [succ]
      if succ not in state:
        found = visit(succ)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def _graph():
  modules = _modules()
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_import_graph_is_read():
  graph = _graph()
  assert "jaxhash.run.rundir" in graph["jaxhash.index"]
  assert "jaxhash.run.rundir" in graph["jaxhash.plots"]  # imported inside a function


def test_cycle_finder_names_the_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_package_modules():
  cycle = _cycle(_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_load_does_not_import_the_training_modules():
  """`jaxhash.load` reads a finished run: it needs the model and the run files, not the loop."""
  graph = _graph()
  seen, todo = set(), ["jaxhash.hasher"]
  while todo:
    node = todo.pop()
    if node not in seen:
      seen.add(node)
      todo.extend(graph[node])
  training = {
    "jaxhash.run.trainer",
    "jaxhash.run.train_step",
    "jaxhash.run.divergence",
    "jaxhash.run.experiment",
  }
  assert not seen & training
