//! Test-side drivers shared by the integration tests and benches.

pub mod nvme_host;
