//! GGUF files (llama.cpp's model format): reading, dequantising, and importing a llama-architecture
//! model as an ONNX causal LM with its tokenizer (see `docs/generation.md`).

pub mod vocab;
pub mod tokenizer;
