"""dentbench reports (see ARCHITECTURE.md)."""
