"""dlt pipelines. Imported by runs only (never while the code location loads): dlt and
SQLAlchemy take longer to import than the rest of the location to load."""
