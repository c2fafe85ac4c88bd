"""Stage 4: the codec's coordinates — PCA (exact, streamed dual, incremental) and the normalizations."""
