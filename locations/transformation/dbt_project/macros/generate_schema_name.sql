{#- Models land in exactly the schema they configure (staging, marts), not in
    "<target schema>_<schema>": the schemas are created and granted by the warehouse
    bootstrap, and their names are the first part of every asset key. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
