//! What leash knows of names: which DNS names each device resolved to an
//! address (`cache`), which answers count and which resolver gave them
//! (`trust`), and the names of devices from DHCP leases and MAC vendors.

pub mod cache;
pub mod leases;
pub mod trust;
pub mod vendor;
