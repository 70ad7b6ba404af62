//! The LLM core: ONNX Runtime, execution providers, the model store and the tasks.
//!
//! Nothing here knows about HTTP or plugins. Callers get a [`engine::Core`], ask it for a
//! [`engine::Model`] and submit work to the model's inference threads.

pub mod engine;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod onnx;
pub mod manifest;
pub mod providers;
pub mod runtime;
pub mod store;
pub mod tensor;
pub mod train;
pub mod text;
pub mod worker;
pub mod zero_shot;

pub use engine::{Core, Model};
