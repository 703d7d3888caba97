"""dentbench training (see ARCHITECTURE.md)."""
