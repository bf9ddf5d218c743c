"""The package's layout, measured from the source with ``ast`` (nothing is imported).

    python3 benchmarks/layout.py [--root REPO] [--json]

Reports: the modules directly under archsearch/; the modules over 400 lines; the import graph between the
package's top-level nodes (each subpackage and each top-level module is one node; imports inside functions and
under ``if TYPE_CHECKING:`` count too), its cycles and its longest chain, counted in NODES on the path (cli ->
export -> results -> search -> model is 5); the cycles of the module-level graph (one node per module, two
graphs: every import, and only the imports run when the module is imported); the imports of the package made
inside functions (``from ..x import`` / ``import archsearch.x`` inside a def or lambda) and the heavy third-party
imports made inside functions, each file:line. Exit code 0 whatever the figures (``--check`` makes missed targets
exit 1).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "archsearch"
# Targets of the refactor (the "one house" issue).
MAX_TOP_MODULES = 6
MAX_LINES = 400
MAX_CHAIN = 8  # nodes on the path
MAX_LOCAL_PACKAGE_IMPORTS = 15
# Third-party modules that cost a light command real time (torch alone is about a second).
HEAVY = frozenset({
    "torch", "torchvision", "gpytorch", "linear_operator", "optuna", "fvcore", "onnx", "onnxruntime", "onnxscript",
    "plotly", "scipy", "sklearn", "sqlalchemy", "psycopg", "numpy", "PIL", "tqdm", "timm", "matplotlib", "pandas",
    "cvnets", "yaml",
})


class Import:
    """One import statement's edge to one module of the package (or one third-party import)."""

    def __init__(self, source: str, target: str, line: int, local: bool, type_checking: bool, text: str):
        self.source, self.target, self.line = source, target, line
        self.local, self.type_checking, self.text = local, type_checking, text


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def walk_imports(tree: ast.AST):
    """Yield (node, inside_function, under_type_checking) for every import statement."""
    stack = [(tree, False, False)]
    while stack:
        node, local, tc = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, local, tc
            continue
        inner_local = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                stack.append((child, inner_local, True))
            for child in node.orelse:
                stack.append((child, inner_local, tc))
            continue
        for child in ast.iter_child_nodes(node):
            stack.append((child, inner_local, tc))


def scan(repo: Path) -> dict:
    pkg_dir = repo / PACKAGE
    if not (pkg_dir / "__init__.py").is_file():
        raise SystemExit(f"layout.py: no {PACKAGE}/__init__.py under {repo}")
    files = sorted(p for p in pkg_dir.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(repo, p): p for p in files}
    packages = {module_name(repo, p) for p in files if p.name == "__init__.py"}
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules.items()}
    edges: list[Import] = []  # to modules of the package
    third: list[Import] = []  # to third-party modules, inside functions only
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = mod if mod in packages else mod.rpartition(".")[0]
        for node, local, tc in walk_imports(tree):
            text = ast.unparse(node)
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        targets.append(alias.name)
                    elif local:
                        third.append(Import(mod, alias.name, node.lineno, local, tc, text))
            else:
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != PACKAGE:
                    if local:
                        third.append(Import(mod, target, node.lineno, local, tc, text))
                    continue
                for alias in node.names:  # from pkg import submodule: the edge goes to the submodule
                    sub = f"{target}.{alias.name}"
                    targets.append(sub if sub in modules else target)
            for target in dict.fromkeys(targets):
                # an import of a name the scan doesn't know (a typo, a removed module) still names its closest module
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                edges.append(Import(mod, target, node.lineno, local, tc, text))
    return {"repo": repo, "modules": modules, "packages": packages, "lines": lines, "edges": edges, "third": third}


def top_node(module: str) -> str:
    """archsearch.gp.surrogate -> gp; archsearch -> __init__; archsearch.__main__ -> __main__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def one_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first node (breadth first), as a closed path."""
    members, start = set(comp), comp[0]
    prev: dict[str, str | None] = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def longest_chain(graph: dict[str, set[str]]) -> tuple[list[str], str]:
    """The longest path, in nodes. Exact when acyclic; over the condensation (a cycle is one node) when not."""
    comps = sccs(graph)
    where = {v: i for i, c in enumerate(comps) for v in c}
    label = [c[0] if len(c) == 1 else "{" + ",".join(c) + "}" for c in comps]
    cgraph = defaultdict(set)
    for v, ws in graph.items():
        for w in ws:
            if where[v] != where[w]:
                cgraph[where[v]].add(where[w])
    best: dict[int, list[int]] = {}
    # Tarjan emits components in reverse topological order: successors first.
    for i in range(len(comps)):
        tails = [best[j] for j in cgraph[i]]
        best[i] = [i] + max(tails, key=len, default=[])
    path = max(best.values(), key=len, default=[])
    how = "exact (acyclic)" if all(len(c) == 1 for c in comps) else "over the condensation: a cycle counts as one node"
    return [label[i] for i in path], how


def measure(repo: Path) -> dict:
    s = scan(repo)
    modules, lines, edges, third = s["modules"], s["lines"], s["edges"], s["third"]

    def rel(mod: str) -> str:
        return str(modules[mod].relative_to(repo))

    top_modules = sorted(str(p.relative_to(repo)) for p in (repo / PACKAGE).glob("*.py"))
    long_modules = sorted(((rel(m), n) for m, n in lines.items() if n > MAX_LINES), key=lambda x: -x[1])

    top = defaultdict(set)
    top_edges = defaultdict(list)
    for m in modules:
        top[top_node(m)]
    for e in edges:
        a, b = top_node(e.source), top_node(e.target)
        if a != b:
            top[a].add(b)
            top_edges[(a, b)].append(f"{rel(e.source)}:{e.line}")
    top_cycles = [c for c in sccs(top) if len(c) > 1]
    chain, chain_how = longest_chain(top)

    def module_graph(import_time_only: bool) -> dict[str, set[str]]:
        g = defaultdict(set)
        for m in modules:
            g[m]
        for e in edges:
            if import_time_only and (e.local or e.type_checking):
                continue
            if e.source != e.target:
                g[e.source].add(e.target)
        return g

    mod_cycles = {}
    for name, only in (("all_imports", False), ("import_time", True)):
        g = module_graph(only)
        mod_cycles[name] = [one_cycle(g, c) for c in sccs(g) if len(c) > 1]

    local_pkg = sorted(((rel(e.source), e.line, e.text) for e in edges if e.local), key=lambda x: (x[0], x[1]))
    local_pkg = list(dict.fromkeys(local_pkg))  # one statement importing two submodules counts once
    heavy = sorted((rel(e.source), e.line, e.text) for e in third if e.target.split(".")[0] in HEAVY)
    heavy = list(dict.fromkeys(heavy))
    other_local = defaultdict(int)
    for e in third:
        root = e.target.split(".")[0]
        if root not in HEAVY:
            other_local["stdlib" if root in sys.stdlib_module_names else "other third-party"] += 1
    by_file = defaultdict(int)
    for f, _, _ in local_pkg:
        by_file[f] += 1
    targets = {
        f"modules directly under {PACKAGE}/ <= {MAX_TOP_MODULES}": len(top_modules) <= MAX_TOP_MODULES,
        f"modules over {MAX_LINES} lines == 0": not long_modules,
        "top-level import cycles == 0": not top_cycles,
        f"longest chain <= {MAX_CHAIN} nodes": len(chain) <= MAX_CHAIN,
        f"function-local imports of the package <= {MAX_LOCAL_PACKAGE_IMPORTS}":
            len(local_pkg) <= MAX_LOCAL_PACKAGE_IMPORTS,
    }
    return {
        "repo": str(repo),
        "modules": len(modules),
        "lines": sum(lines.values()),
        "top_modules": top_modules,
        "long_modules": [{"file": f, "lines": n} for f, n in long_modules],
        "top_graph": {a: sorted(bs) for a, bs in sorted(top.items())},
        "top_edge_sites": {f"{a} -> {b}": sites for (a, b), sites in sorted(top_edges.items())},
        "top_cycles": top_cycles,
        "longest_chain": {"nodes": len(chain), "edges": max(len(chain) - 1, 0), "path": chain, "how": chain_how},
        "module_cycles": mod_cycles,
        "local_package_imports": [{"file": f, "line": n, "import": t} for f, n, t in local_pkg],
        "local_package_imports_by_file": dict(sorted(by_file.items(), key=lambda x: (-x[1], x[0]))),
        "local_heavy_imports": [{"file": f, "line": n, "import": t} for f, n, t in heavy],
        "local_other_imports": dict(other_local),
        "targets": targets,
    }


def render(r: dict, sites: bool) -> str:
    out = [f"layout of {r['repo']}: {r['modules']} modules, {r['lines']} lines"]
    out.append(f"\nmodules directly under {PACKAGE}/: {len(r['top_modules'])}"
               + ("" if len(r["top_modules"]) > 12 else "  " + " ".join(Path(m).name for m in r["top_modules"])))
    out.append(f"modules over {MAX_LINES} lines: {len(r['long_modules'])}"
               + "".join(f"\n  {m['lines']:>5}  {m['file']}" for m in r["long_modules"]))
    g = r["top_graph"]
    out.append(f"\ntop-level graph: {len(g)} nodes, {sum(map(len, g.values()))} edges "
               "(node = a subpackage or a top-level module; imports in functions and TYPE_CHECKING count)")
    for a, bs in g.items():
        out.append(f"  {a:<16} -> {', '.join(bs) if bs else '-'}")
    cycles = r["top_cycles"]
    out.append(f"top-level cycles: {len(cycles)}" + "".join(f"\n  {{{', '.join(c)}}}" for c in cycles))
    ch = r["longest_chain"]
    out.append(f"longest chain: {ch['nodes']} nodes ({ch['edges']} edges; {ch['how']})\n  {' -> '.join(ch['path'])}")
    for name, label in (("all_imports", "every import"), ("import_time", "imports run at import time only")):
        cyc = r["module_cycles"][name]
        out.append(f"module-level cycles ({label}): {len(cyc)}"
                   + "".join(f"\n  {' -> '.join(m.removeprefix(PACKAGE + '.') for m in c)}" for c in cyc[:10])
                   + (f"\n  ... {len(cyc) - 10} more" if len(cyc) > 10 else ""))
    lp = r["local_package_imports"]
    out.append(f"\nfunction-local imports of the package: {len(lp)} in {len(r['local_package_imports_by_file'])} files")
    for f, n in r["local_package_imports_by_file"].items():
        out.append(f"  {n:>3}  {f}")
    if sites:
        out.extend(f"    {i['file']}:{i['line']}  {i['import']}" for i in lp)
    hv = r["local_heavy_imports"]
    out.append(f"function-local heavy third-party imports: {len(hv)}")
    out.extend(f"  {i['file']}:{i['line']}  {i['import']}" for i in hv)
    if r["local_other_imports"]:
        out.append("other function-local imports: "
                   + ", ".join(f"{k} {v}" for k, v in sorted(r["local_other_imports"].items())))
    out.append("\ntargets:")
    out.extend(f"  {'ok  ' if ok else 'MISS'}  {t}" for t, ok in r["targets"].items())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                        help="repository root holding archsearch/ (default: this script's repository)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sites", action="store_true", help="list every function-local import of the package")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    report = measure(Path(args.root).resolve())
    print(json.dumps(report, indent=1) if args.json else render(report, args.sites))
    return 1 if args.check and not all(report["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
