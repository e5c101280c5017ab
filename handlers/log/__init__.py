"""Log handlers: what each event of the log does (training records, builds, promotions) and verify."""
