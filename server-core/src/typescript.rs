//! The UI's TypeScript types, generated from the Rust types it receives and sends
//! (ts-rs). `cargo test` writes them to `ui/src/lib/api/generated/`, and fails when what
//! it wrote differs from what was there: commit the new files.

use std::path::{Path, PathBuf};

use ts_rs::TS;

use crate::{
    config::{RegistrationMode, TlsMode},
    crypto::PasswordStrength,
    logging::LogLine,
    service::{
        archive::Manifest,
        certificates::CertificateStatus,
        checker::report::Report,
        dashboard::{
            ClosedRoom, Destination, HealthSummary, RegistrationToken, RoomMember, RoomSummary,
            Sample, Stats, Status, UserSummary,
        },
        delegation::DelegationPlan,
        health::HealthState,
        portmap::PortMapReport,
        setup::{
            AdminCheck, AnswerProblem, Applied, ConfigText, Reachability, Restarting, ServerKind,
            SetupAnswers, SetupCheck, SetupState, UiLogin,
        },
    },
};

fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/api/generated")
}

fn export_all(dir: &Path) -> Result<(), ts_rs::ExportError> {
    let config = ts_rs::Config::new().with_out_dir(dir);
    Status::export_all(&config)?;
    HealthSummary::export_all(&config)?;
    HealthState::export_all(&config)?;
    CertificateStatus::export_all(&config)?;
    Stats::export_all(&config)?;
    Sample::export_all(&config)?;
    UserSummary::export_all(&config)?;
    RegistrationToken::export_all(&config)?;
    RoomSummary::export_all(&config)?;
    RoomMember::export_all(&config)?;
    Destination::export_all(&config)?;
    ClosedRoom::export_all(&config)?;
    PasswordStrength::export_all(&config)?;
    SetupAnswers::export_all(&config)?;
    SetupCheck::export_all(&config)?;
    AdminCheck::export_all(&config)?;
    AnswerProblem::export_all(&config)?;
    ServerKind::export_all(&config)?;
    Reachability::export_all(&config)?;
    DelegationPlan::export_all(&config)?;
    TlsMode::export_all(&config)?;
    RegistrationMode::export_all(&config)?;
    SetupState::export_all(&config)?;
    Applied::export_all(&config)?;
    UiLogin::export_all(&config)?;
    Restarting::export_all(&config)?;
    Report::export_all(&config)?;
    ConfigText::export_all(&config)?;
    LogLine::export_all(&config)?;
    Manifest::export_all(&config)?;
    PortMapReport::export_all(&config)?;
    Ok(())
}

fn read_all(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    read_into(dir, "", &mut files);
    files
}

/// Every file under `dir`, by its path relative to the top (`serde_json/JsonValue.ts`).
fn read_into(dir: &Path, prefix: &str, files: &mut std::collections::BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if path.is_dir() {
            read_into(&path, &format!("{name}/"), files);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            files.insert(name, text);
        }
    }
}

#[test]
fn the_ui_types_are_generated_from_the_rust_types() {
    let fresh = tempfile::tempdir().expect("temp dir");
    export_all(fresh.path()).expect("export");
    let expected = read_all(fresh.path());
    let dir = generated_dir();
    let before = read_all(&dir);
    if before != expected {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the generated dir");
        for (name, text) in &expected {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a generated dir");
            }
            std::fs::write(path, text).expect("write a generated file");
        }
        panic!("ui/src/lib/api/generated/ was out of date and has been written again: commit it");
    }
}
