"""publish: a blessed model to the content-addressed store and the MLflow registry, with its lineage."""
