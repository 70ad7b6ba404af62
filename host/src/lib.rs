//! llmos: one host process that runs ONNX models and sandboxed WebAssembly plugins
//! behind a local HTTP endpoint.
//!
//! Modules follow the design in `docs/design.md`: data flows one way,
//! `api` → `plugins` (pipeline) → `core` → store. Nothing in `core` knows about
//! plugins or HTTP.

/// Request-path hygiene: a module declared through this macro may handle request-, guest-
/// or file-derived data, and clippy denies there what could panic or wrap on such data:
/// `unwrap`/`expect`, slice indexing, unchecked arithmetic, `panic!`/`unreachable!` and
/// truncating casts. The set is written once, here, and every top-level module is declared
/// through it; `cargo clippy --all-targets -- -D warnings` enforces it. Test code may unwrap,
/// index and panic (`clippy.toml`); any other exception is an `#[allow]` on one item with a
/// `// why:` comment.
macro_rules! request_path {
    ($(#[$m:meta])* $vis:vis mod $name:ident;) => {
        $(#[$m])*
        #[deny(
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::indexing_slicing,
            clippy::arithmetic_side_effects,
            clippy::panic,
            clippy::unreachable,
            clippy::cast_possible_truncation
        )]
        $vis mod $name;
    };
}

request_path! { pub mod api; }
request_path! { pub mod cli; }
request_path! { pub mod config; }
request_path! { pub mod core; }
request_path! { pub mod data; }
request_path! { #[doc(hidden)] pub mod fuzzing; }
request_path! { pub mod json; }
request_path! { pub mod plugins; }
request_path! { pub mod security; }

#[cfg(test)]
mod tests {
    /// Every top-level module is declared through `request_path!`, so the lint set covers
    /// every file of the crate; a plain `mod` added here would leave a module outside it.
    #[test]
    fn every_module_is_under_the_lint_set() {
        let src = include_str!("lib.rs");
        let plain: Vec<&str> = src
            .lines()
            .map(str::trim)
            .filter(|l| (l.starts_with("pub mod ") || l.starts_with("mod ")) && l.ends_with(';'))
            .collect();
        assert!(
            plain.is_empty(),
            "declare these through request_path! (docs/design.md, Request-path hygiene): {plain:?}"
        );
        let wrapped = src
            .lines()
            .filter(|l| l.starts_with("request_path! { "))
            .count();
        assert_eq!(
            wrapped, 9,
            "api, cli, config, core, data, fuzzing, json, plugins, security"
        );
    }
}
