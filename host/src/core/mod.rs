//! Placeholder so the `plugins` branch builds on its own; main's `core` replaces this file
//! when the branch is merged (take main's version).

pub mod providers;
