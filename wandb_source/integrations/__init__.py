"""Orchestrators: `dagster` (assets through dagster-dlt, one partition per shard). Airflow: README, "At scale"."""
