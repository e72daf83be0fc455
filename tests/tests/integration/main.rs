//! Kith's integration tests, one binary: each file is a module, so the dependencies
//! (matrix-sdk above all) are compiled and linked once instead of once per file.

// matrix-sdk's futures are deeply nested types.
#![recursion_limit = "256"]

mod accounts;
mod acme;
mod bench_federation;
mod certificates;
mod checker;
mod dashboard;
mod e2ee;
mod e2ee_sdk;
mod federation;
mod federation_rooms;
mod matrix_sdk_client;
mod media;
mod portmap;
mod presence;
mod push_rules;
mod rooms;
mod server;
mod synapse;
