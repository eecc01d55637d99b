"""Reading a loaded dataset back: parquet exports in the replaced exporter's layout (`export`), metric
curves for plots (`curves`)."""
