"""What every layer shares: config loading (common.config) and atomic file writes (common.files)."""
