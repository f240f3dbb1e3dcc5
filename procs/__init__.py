"""One module per stage process of the pipeline."""
