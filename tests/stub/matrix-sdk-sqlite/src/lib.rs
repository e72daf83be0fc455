//! Empty: see `Cargo.toml`. Never compiled into Kith's tests (the optional dependency it
//! stands in for is not enabled).
