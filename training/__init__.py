"""What every recipe shares: plain functions and small classes (see docs/DEVELOPING.md)."""
