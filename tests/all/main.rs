//! Integration tests of llmos, one binary. Modules are named `<area>_<topic>`.

mod plugins_common;
mod plugins_grants;
mod plugins_install;
mod plugins_sandbox;
mod plugins_shipped;
