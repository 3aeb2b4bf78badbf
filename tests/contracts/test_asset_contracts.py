"""Contracts between code locations: they meet only through asset keys, never through code."""

import ast
import json
from pathlib import Path

import dagster as dg

from platform_devkit.instance import locations

LOCATIONS = locations()
PACKAGES = {loc["module"].split(".")[0] for loc in LOCATIONS}


def materializable(defs: dg.Definitions) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().materializable_asset_keys)


def upstream_of(defs: dg.Definitions) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    own = materializable(defs)
    return {p for key in own for p in graph.get(key).parent_keys} - own


def test_every_upstream_key_is_materialised_by_a_location_listed_before(location_defs):
    seen: set[dg.AssetKey] = set()
    for name, defs in location_defs.items():
        missing = upstream_of(defs) - seen
        assert not missing, f"{name} depends on {missing}, not built by an earlier location"
        seen |= materializable(defs)


def test_every_dbt_source_is_exactly_an_ingestion_asset(location_defs):
    manifest = next(
        Path(LOCATIONS[1]["path"]).glob(
            "src/*/defs/.local_defs_state/*/project/target/manifest.json"
        )
    )
    sources = json.loads(manifest.read_text())["sources"].values()
    source_keys = {dg.AssetKey([s["schema"], s["name"]]) for s in sources}

    assert source_keys <= materializable(location_defs["ingestion"])
    assert source_keys == upstream_of(location_defs["transformation"])


def test_with_all_locations_together_each_staging_model_has_its_raw_parent(workspace_defs):
    graph = workspace_defs.resolve_asset_graph()

    for key in graph.materializable_asset_keys:
        if key.path[0] == "staging":
            parents = graph.get(key).parent_keys
            assert parents, key
            assert all(p.path[0] == "raw" and graph.get(p).is_materializable for p in parents)


def test_no_location_imports_another():
    for location in LOCATIONS:
        own = location["module"].split(".")[0]
        for path in Path(location["path"], "src").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                foreign = {n.split(".")[0] for n in names} & (PACKAGES - {own})
                assert not foreign, f"{path} imports {foreign}"
