//! Placeholder so the `plugins` branch builds on its own; main's `api` replaces it on merge.
