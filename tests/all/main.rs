//! The one integration-test binary. Each module covers one area, named `<area>_<topic>`.
//! Tests drive the real `llmos` binary the way a user would.

#![allow(unreachable_pub)] // test-only items: `pub` in a test binary reaches nothing

mod support;
mod support_pg;

mod core_errors;
mod core_generate;
mod core_generate_import;
mod core_gguf_tokenizer;
mod core_models;
mod core_onnx_classifier;
mod core_real_models;
mod core_train_minilm;

mod api_access;
mod api_auth;
mod api_auth_matrix;
mod api_generate;
mod api_generate_grounded;
mod api_html;
mod api_kserve;
mod api_openai;
mod api_robust;
mod api_schemathesis;
mod api_structured;
mod api_zero_shot;
mod console;
mod fair_scheduling;

mod author_dev;
mod author_js;
mod author_python;
mod author_scripted;
mod cli_while_serving;

mod plugins_common;
mod plugins_concurrency;
mod plugins_content_policy_classifier;
mod plugins_generate;
mod plugins_grants;
mod plugins_hardening;
mod plugins_install;
mod plugins_quotas;
mod plugins_sandbox;
mod plugins_shipped;
mod plugins_signing;
mod plugins_test_cmd;

mod author_rust;

mod data_anonymize;
mod data_backends;
mod data_collections;
mod data_ingest;
mod data_retrieval;
mod security_audit;
mod tools_e2e;
mod tools_loop;

mod fuzz_replay;

mod data_store;
mod grpc;
mod k8s;
mod mcp;
mod replicas;
mod tools_guests;
mod tools_plugins;
mod train_classifier;
