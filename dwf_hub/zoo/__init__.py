"""Stage 1–2: how a zoo is made and stored — recipes and data, member training (optimizers, init schemes, spawned starts), the zoo format and its provenance, export to plain networks."""
