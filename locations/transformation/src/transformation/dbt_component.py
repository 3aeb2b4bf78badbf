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
  (`include_metadata: [column_metadata]`) and the descriptions the dbt YAML gives.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import dagster as dg
from dagster.components import Resolver
from dagster_dbt import DbtCliResource, DbtProject, DbtProjectComponent

from platform_ops.recovery import request_retry_if_transient

COLUMN_SCHEMA = "dagster/column_schema"


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
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=spec.description,
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking=spec.blocking,
            automation_condition=self.cross_model_check_automation,
        )

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
        failed_checks = []
        try:
            for event in self._with_descriptions(context, super().execute(context, dbt)):
                if isinstance(event, dg.AssetCheckResult) and not event.passed:
                    failed_checks.append(event.check_name)
                yield event
        except Exception as error:
            # A test that failed says the data is wrong: another attempt cannot fix that.
            if not failed_checks:
                request_retry_if_transient(context, error)
            raise
