"""Stage 8: shipping — Hub download/upload with one HubMixin, and the model / dataset cards."""
