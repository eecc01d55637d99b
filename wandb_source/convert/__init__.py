"""Pure conversion, no I/O and no dlt state: W&B values (`values`), column names (`columns`), history and
system-metric tables (`metrics`), run/project/sweep rows (`runs`), files and artifacts beside a run
(`run_objects`), and which keys and steps to keep (`selection`)."""
