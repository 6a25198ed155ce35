"""Evidence: sweeps on Ray Tune (``sweep``), what one trial runs (``trials``), the claims ledger's statistics
(``ledger``) and the report that turns trial summaries into a results JSON (``report``)."""
