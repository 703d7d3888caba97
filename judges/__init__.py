"""dentbench judges (see ARCHITECTURE.md)."""
