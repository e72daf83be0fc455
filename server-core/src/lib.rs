//! Kith: a Matrix homeserver as a library, plus the headless `kith` binary.
//!
//! # Layout
//!
//! Requests flow one way: `api` → `service` → `storage`.
//!
//! - [`api`] is HTTP: the Client-Server API, the server key endpoint and `.well-known`.
//!   Handlers parse, authorise, call a few services and respond.
//! - [`service`] is what a homeserver does: accounts, rooms (build, sign, authorise and store
//!   events), sync, typing, account data, media. Services never see HTTP types.
//! - [`storage`] is SQLite: typed sub-stores and numbered migrations, all work on blocking
//!   threads.
//! - [`crypto`], [`config`], [`error`], [`memory`], [`net`] and [`pdu`] are leaves anyone may
//!   use.
//! - [`control`] is the small API the desktop shell, the `kith` binary and the tests call:
//!   start, stop, status, events, user admin.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod control;
pub mod crypto;
pub mod error;
pub mod logging;
pub mod memory;
pub mod net;
pub mod pdu;
pub mod service;
pub mod storage;
#[cfg(test)]
mod typescript;

pub use crate::{
    config::Config,
    control::{RunningServer, ServerEvent, StartOptions, Status, start, start_with},
    error::{Error, Result},
};
