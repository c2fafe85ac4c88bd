"""Flow matching in weight space: velocity model, ODE scheduler, trainer."""
