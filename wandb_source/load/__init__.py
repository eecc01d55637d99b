"""Loading with dlt: per-run jobs (`jobs`, on the bounded `pool`), running a pipeline safely (`runner`,
`destination`, and every use of dlt internals in `dlt_internals`), the dry-run `plan` and `progress` lines."""
