"""ST / ST++ stage command-line programs (``python -m stages.<name>``)."""
