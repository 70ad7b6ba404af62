//! Security: capability grants, sealing of stored data, the audit log, API keys and scopes.

request_path! { pub mod audit; }
pub mod capability;
request_path! { pub mod keys; }
pub mod seal;

pub use audit::{AuditLog, AuditRecord};
pub use capability::{Capability, CapabilityError, CapabilitySet, HttpScheme};
pub use seal::{SealError, Sealer};
