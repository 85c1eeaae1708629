"""Activities, one class per outside system: the ledger (PostgreSQL) and the message channels."""
