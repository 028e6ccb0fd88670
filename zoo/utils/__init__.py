"""Small shared helpers: seeding and device selection."""
