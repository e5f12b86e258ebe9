"""The encode stage."""
