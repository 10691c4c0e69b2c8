"""Workbench: train recommendation, streaming-CTR and source-separation models from a browser or the CLI."""
