"""Everything that talks to W&B: the GraphQL documents (`queries`), the session with its headers and
retries (`transport`), the operations and paging (`client`), which server and key (`credentials`), and
the planned, checked reads of a run's history (`history_plan`, `history`) and system metrics (`events`)."""
