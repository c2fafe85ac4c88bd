"""Stage 7: judging networks — task scores, novelty and diversity, the baselines, the frontier, connectivity, zoo evaluation, transfer learning and the report."""
