"""Studies: Optuna searches whose trials are ordinary workbench runs."""
