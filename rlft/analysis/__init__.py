"""Reading finished runs back: run folders, compare, plots, win rates, W&B reports, sweeps."""
