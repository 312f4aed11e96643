"""The package's shape, checked: no module imports itself back through others.

import-linter (``lint-imports`` in CI) checks the layers between packages; this checks the file-level graph,
where a loop can hide inside one layer. grimp counts imports inside functions and under ``TYPE_CHECKING`` too, so a
loop dodged with a lazy import is still found.
"""

from __future__ import annotations

import graphlib

import grimp


def test_no_file_level_import_cycle() -> None:
    graph = grimp.build_graph("affectlab", cache_dir=None, exclude_type_checking_imports=False)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_runtime_is_independent_of_the_front_ends() -> None:
    """The predictor is usable alone: runtime imports none of the packages built on it, lazily or not."""
    graph = grimp.build_graph("affectlab", cache_dir=None, exclude_type_checking_imports=False)
    for front_end in ("affectlab.serve", "affectlab.export", "affectlab.batch", "affectlab.cli"):
        chain = graph.find_shortest_chain(importer="affectlab.runtime", imported=front_end, as_packages=True)
        assert chain is None, f"runtime reaches {front_end}: {' -> '.join(chain)}"
