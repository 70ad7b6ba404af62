//! Host bindings of the `llmos:plugin@0.1.1` worlds, generated from `wit/llmos-plugin@0.1.1`.
//!
//! One set of bindings serves components built against `0.1.0` too: `0.1.1` only adds (the
//! `data` interface, the `tool` world), and wasmtime's component `Linker` is semver-aware —
//! a definition of `llmos:plugin/kv@0.1.1` also answers an import of `llmos:plugin/kv@0.1.0`
//! (docs/tools.md §1). The tests keep building the testing plugins against `0.1.0`.
//!
//! Every import is `trappable`: host functions return `wasmtime::Result`, so a host fault
//! (or an exhausted host-call budget) traps, while errors the guest should handle are the
//! WIT `error` variant inside the function's own `result`.
//!
//! Imports and exports are `async`: a call runs as a future on the worker's own executor, so
//! a guest that blocks in the host (a WASI sleep, a pending HTTP response) is cancelled by
//! the call's wall-clock deadline like one that spins.

#![allow(missing_docs, unreachable_pub)]

/// The `preprocessor` world; its interface modules are shared by the other worlds.
pub mod preprocessor {
    wasmtime::component::bindgen!({
        path: "../wit/llmos-plugin@0.1.1",
        world: "preprocessor",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// The `policy` world.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/llmos-plugin@0.1.1",
        world: "policy",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "llmos:plugin/types": super::preprocessor::llmos::plugin::types,
            "llmos:plugin/log": super::preprocessor::llmos::plugin::log,
            "llmos:plugin/config": super::preprocessor::llmos::plugin::config,
            "llmos:plugin/kv": super::preprocessor::llmos::plugin::kv,
            "llmos:plugin/inference": super::preprocessor::llmos::plugin::inference,
            "llmos:plugin/secrets": super::preprocessor::llmos::plugin::secrets,
            "llmos:plugin/data": super::preprocessor::llmos::plugin::data,
        },
    });
}

/// The `integration` world.
pub mod integration {
    wasmtime::component::bindgen!({
        path: "../wit/llmos-plugin@0.1.1",
        world: "integration",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "llmos:plugin/types": super::preprocessor::llmos::plugin::types,
            "llmos:plugin/log": super::preprocessor::llmos::plugin::log,
            "llmos:plugin/config": super::preprocessor::llmos::plugin::config,
            "llmos:plugin/kv": super::preprocessor::llmos::plugin::kv,
            "llmos:plugin/inference": super::preprocessor::llmos::plugin::inference,
            "llmos:plugin/secrets": super::preprocessor::llmos::plugin::secrets,
            "llmos:plugin/data": super::preprocessor::llmos::plugin::data,
        },
    });
}

/// The `tool` world (since 0.1.1).
pub mod tool {
    wasmtime::component::bindgen!({
        path: "../wit/llmos-plugin@0.1.1",
        world: "tool",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "llmos:plugin/types": super::preprocessor::llmos::plugin::types,
            "llmos:plugin/log": super::preprocessor::llmos::plugin::log,
            "llmos:plugin/config": super::preprocessor::llmos::plugin::config,
            "llmos:plugin/kv": super::preprocessor::llmos::plugin::kv,
            "llmos:plugin/inference": super::preprocessor::llmos::plugin::inference,
            "llmos:plugin/secrets": super::preprocessor::llmos::plugin::secrets,
            "llmos:plugin/data": super::preprocessor::llmos::plugin::data,
        },
    });
}

pub use preprocessor::llmos::plugin::{config, data, inference, kv, log, secrets, types};
