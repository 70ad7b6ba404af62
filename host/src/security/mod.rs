//! Security: capability grants, sealing of stored data, and the audit log.
//!
//! API keys and scopes come with the HTTP API issue and extend this module.

pub mod audit;
pub mod capability;
pub mod seal;

pub use audit::{AuditLog, AuditRecord};
pub use capability::{Capability, CapabilityError, CapabilitySet};
pub use seal::{SealError, Sealer};
