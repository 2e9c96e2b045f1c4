"""Dependencies point one way (docs/dev/architecture.md); this walks the imports with ast."""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "ocibuild"

# package -> ocibuild packages it may import (errors is allowed everywhere)
ALLOWED = {
    "oci": set(),
    "dockerfile": {"oci"},
    "layer": set(),
    "store": {"oci"},
    "sandbox": {"oci", "layer"},
    "registry": {"oci", "store"},
    "cache": {"oci", "store", "registry"},
    "builder": {"oci", "dockerfile", "layer", "store", "sandbox", "registry", "cache"},
    "manifests": {"oci", "store", "registry"},
    "layerspec": {"oci", "layer", "store", "builder"},
    "cli": {"oci", "dockerfile", "layer", "store", "sandbox", "registry", "builder", "manifests", "layerspec",
            "cache"},
}
THIRD_PARTY_OWNERS = {"oras": {"registry"}, "dockerfile": {"dockerfile"}}


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_dependencies_point_one_way():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if len(rel) < 2:
            continue
        own = rel[0]
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "ocibuild" and len(parts) > 1:
                target = parts[1]
                if target not in ("errors", own, "__init__") and target not in ALLOWED.get(own, set()):
                    bad.append(f"{path.relative_to(PKG)} imports {name}")
            owners = THIRD_PARTY_OWNERS.get(parts[0])
            if owners is not None and own not in owners:
                bad.append(f"{path.relative_to(PKG)} imports {name} (only {owners} may)")
    assert not bad, "\n".join(bad)


def test_oci_uses_only_the_standard_library():
    import sys
    for path in (PKG / "oci").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith(("ocibuild.oci", "ocibuild.errors")) \
                or top == "__future__", f"{path.name} imports {name}"
