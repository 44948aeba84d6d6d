"""Held-out evaluation every stage shares: the scorecard (greedy generation, rewards, KL, preference accuracy)."""
