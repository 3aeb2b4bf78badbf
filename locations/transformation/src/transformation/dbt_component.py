"""The dbt project component of this location: dagster-dbt's DbtProjectComponent, plus what its
YAML options cannot say (docs/operations.md):

- a dbt build that failed only because the warehouse connection was lost or refused (or on a
  serialization failure or deadlock) is retried with backoff; a failed test or a SQL error is
  not (`platform_ops.recovery`);
- dbt tests that read more than one model (relationships, the singular business rules) get an
  automation condition of their own, `cross_model_check_automation`: dbt runs a test only when
  every model it reads is in the same build (the project's cautious indirect selection), so
  automation's partial builds would leave those checks Skipped; the condition runs them when
  their models are fresh;
- each materialisation's column schema has the column types the warehouse reports
  (`include_metadata: [column_metadata]`) and the descriptions the dbt YAML gives;
- the definitions read one version of the prepared state for the whole life of the process
  (`pin_state_version`), though the devkit switches the state folder to a new version beside
  a running code server (docs/local-platform.md).
"""

import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components import Resolver
from dagster_dbt import DbtCliResource, DbtProject, DbtProjectComponent
from dagster_shared.record import replace

from platform_ops.recovery import request_retry_if_transient

COLUMN_SCHEMA = "dagster/column_schema"

# The state versions this process read its definitions from, each with the open file that holds
# its shared lock: closed only when the process ends.
_PINNED: dict[Path, int] = {}


def pin_state_version(state_path: Path, attempts: int = 5) -> Path:
    """The state file of the concrete version `state_path` names now, kept for this process.

    In dev, `<key>/` is a symlink the devkit swaps to a newly prepared version
    (platform_devkit.defs_state): paths through it would name whichever version is current when
    they are read, so a run could read one version's manifest and another's project files.
    Every path built from the returned one names the version folder itself. The shared lock on
    its `state` file tells the devkit that a process still reads the version: the devkit deletes
    a version only while it holds the exclusive lock. Where the state is an ordinary folder (an
    image), this is the same path and the lock keeps nothing from anyone."""
    for _ in range(attempts):
        real = Path(os.path.realpath(state_path))
        if real in _PINNED:
            return real
        try:
            held = os.open(real, os.O_RDONLY)
        except FileNotFoundError:
            continue  # the devkit removed that version between the two calls: resolve again
        fcntl.flock(held, fcntl.LOCK_SH)
        try:
            unchanged = os.stat(real).st_ino == os.fstat(held).st_ino
        except FileNotFoundError:
            unchanged = False
        if unchanged:
            _PINNED[real] = held
            return real
        # Removed while this process waited for the lock: the link names a newer version.
        os.close(held)
    raise RuntimeError(f"the defs state {state_path} changed on each of {attempts} reads")


def says_the_data_is_wrong(event: Any) -> bool:
    """A failed dbt test of severity error: another attempt of the build cannot fix that. A
    test of severity warn reports and lets the build go on (dbt exits 0 for it), so it says
    nothing about why the build failed later."""
    return (
        isinstance(event, dg.AssetCheckResult)
        and not event.passed
        and event.severity == dg.AssetCheckSeverity.ERROR
    )


def _schema(value: Any) -> dg.TableSchema | None:
    return value.schema if isinstance(value, dg.TableSchemaMetadataValue) else value


def described(fetched: dg.TableSchema, declared: dg.TableSchema | None) -> dg.TableSchema:
    """The warehouse's columns and types, with the descriptions and tags the YAML declares."""
    known = {column.name: column for column in declared.columns} if declared else {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type,
                description=known[column.name].description if column.name in known else None,
                tags=known[column.name].tags if column.name in known else {},
            )
            for column in fetched.columns
        ]
    )


@dataclass
class ShopDbtProjectComponent(DbtProjectComponent):
    """DbtProjectComponent with transient-only retries, cross-model test automation and
    described column schemas."""

    cross_model_check_automation: Annotated[
        dg.AutomationCondition | None,
        Resolver.default(
            model_field_type=str | None,
            description="The automation condition of dbt tests that read more than one model.",
        ),
    ] = None

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or not spec.additional_deps or self.cross_model_check_automation is None:
            return spec
        return replace(spec, automation_condition=self.cross_model_check_automation)

    def build_defs_from_state(
        self, context: dg.ComponentLoadContext, state_path: Path | None
    ) -> dg.Definitions:
        # The project dir, manifest and profiles dir DbtProjectArgsManager.get_project derives
        # from the state path then name one version, whatever the devkit switches to later.
        pinned = pin_state_version(state_path) if state_path is not None else None
        return super().build_defs_from_state(context, pinned)

    def _with_descriptions(
        self, context: dg.AssetExecutionContext, events: Iterable[Any]
    ) -> Iterator[Any]:
        specs = context.assets_def.specs_by_key
        for event in events:
            fetched = _schema((getattr(event, "metadata", None) or {}).get(COLUMN_SCHEMA))
            if fetched is not None and isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                declared = _schema(specs[key].metadata.get(COLUMN_SCHEMA))
                event = event.with_metadata(
                    {**event.metadata, COLUMN_SCHEMA: described(fetched, declared)}
                )
            yield event

    def execute(self, context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator:
        data_is_wrong = False
        try:
            for event in self._with_descriptions(context, super().execute(context, dbt)):
                data_is_wrong = data_is_wrong or says_the_data_is_wrong(event)
                yield event
        except Exception as error:
            if not data_is_wrong:
                request_retry_if_transient(context, error)
            raise
