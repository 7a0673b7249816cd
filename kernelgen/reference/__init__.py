"""Float64 references written from each family's math, used by tests and by every tuning trial."""
