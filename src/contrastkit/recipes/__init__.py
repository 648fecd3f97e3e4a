"""Recipes: one task each (data + views + encoder + loss + evaluation) wired for the engine."""
