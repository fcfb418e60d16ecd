"""Quality Check."""
