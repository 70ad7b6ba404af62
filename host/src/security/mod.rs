//! Security: capability grants, sealing of stored data, the audit log, API keys and scopes.

pub mod audit;
pub mod capability;
pub mod keys;
pub mod master;
pub mod seal;
pub mod signing;

pub use audit::{AuditLog, AuditRecord};
pub use capability::{Capability, CapabilityError, CapabilitySet, HttpScheme};
pub use seal::{SealError, Sealer};
