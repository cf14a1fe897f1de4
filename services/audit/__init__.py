"""The audit trail: one record per answered inspection, its stores, and the `echo-iad audit` commands."""
