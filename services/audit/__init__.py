"""The audit trail: one record per answered inspection, and its stores (`echo-iad audit`: app/commands/audit.py)."""
