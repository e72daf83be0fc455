//! Backups: the whole data dir as one tar file, made while the server runs, and put back
//! at the next start.
//!
//! A backup holds a consistent snapshot of the database (SQLite's `VACUUM INTO`, one read
//! transaction), the signing key, the certificates, the media files, the config, and a
//! manifest. Media files are named by their content and written before the rows that name
//! them commit (ARCHITECTURE.md), so every file the snapshot names is there when copied
//! after it.
//!
//! A restore is staged: the uploaded file is checked and kept as `restore.tar`; the
//! server restarts, and before it opens anything, [`apply_pending_restore`] moves the
//! current data aside (into `before-restore-<time>/`: nothing is lost) and unpacks the
//! backup in its place.

use std::{
    io::{Read, Seek},
    path::{Component, Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    storage::Store,
};

/// The staged restore, applied at the next start.
pub const RESTORE_FILE: &str = "restore.tar";
/// Where backups are assembled before they are handed over.
const WORK_DIR: &str = "backup-tmp";
/// The manifest's name inside a backup.
const MANIFEST: &str = "kith-backup.json";
/// What the data dir holds that a backup carries (besides the database snapshot).
const CARRIED: [&str; 4] = ["keys", "tls", "acme", "media"];
/// What a restore moves aside before unpacking.
const REPLACED: [&str; 8] = [
    "kith.db",
    "kith.db-wal",
    "kith.db-shm",
    "keys",
    "tls",
    "acme",
    "media",
    "kith.toml",
];

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Manifest {
    /// The server whose data it is.
    pub server_name: String,
    /// When it was made (ms since the epoch).
    #[cfg_attr(test, ts(type = "number"))]
    pub created_ts: i64,
    /// The Kith version that made it.
    pub version: String,
}

/// Makes a backup of `data_dir` (and the config file) into a new file in the data dir's
/// work folder, and returns its path; the caller hands it over and deletes it.
pub fn export(
    store: &Store,
    data_dir: &Path,
    config_file: Option<&Path>,
    server_name: &str,
) -> Result<PathBuf> {
    let work = data_dir.join(WORK_DIR);
    // What an interrupted export left.
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let stamp = crate::storage::now_ms();
    let snapshot = work.join(format!("kith-{stamp}.db"));
    store.snapshot_to(&snapshot)?;
    let path = work.join(format!("kith-backup-{stamp}.tar"));
    let file = std::fs::File::create(&path)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let manifest = Manifest {
        server_name: server_name.to_owned(),
        created_ts: stamp,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(stamp / 1000).unwrap_or_default());
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, manifest.as_slice())?;
    tar.append_path_with_name(&snapshot, "kith.db")?;
    for dir in CARRIED {
        let source = data_dir.join(dir);
        if source.is_dir() {
            append_dir(&mut tar, &source, Path::new(dir))?;
        }
    }
    if let Some(config_file) = config_file.filter(|path| path.is_file()) {
        tar.append_path_with_name(config_file, "kith.toml")?;
    }
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::remove_file(&snapshot)?;
    Ok(path)
}

/// Adds the files under `source` as `name/...`, leaving out uploads in progress.
fn append_dir<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    source: &Path,
    name: &Path,
) -> Result<()> {
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let path = entry.path();
        let inner = name.join(entry.file_name());
        if inner == Path::new("media").join("tmp") {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            append_dir(tar, &path, &inner)?;
        } else if kind.is_file() {
            tar.append_path_with_name(&path, &inner)?;
        }
    }
    Ok(())
}

/// Checks that `archive` is a Kith backup that can be unpacked safely, and returns its
/// manifest.
pub fn check<R: Read + Seek>(archive: &mut R) -> Result<Manifest> {
    archive.rewind()?;
    let mut tar = tar::Archive::new(&mut *archive);
    let mut manifest = None;
    let (mut database, mut key) = (false, false);
    for entry in tar.entries().map_err(not_a_backup)? {
        let mut entry = entry.map_err(not_a_backup)?;
        let path = entry.path().map_err(not_a_backup)?.into_owned();
        if !is_safe(&path) {
            return Err(Error::invalid_param(format!(
                "This backup holds a file outside its folder ({}); it is not one Kith made.",
                path.display()
            )));
        }
        if path == Path::new(MANIFEST) {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(not_a_backup)?;
            manifest = Some(serde_json::from_str::<Manifest>(&text).map_err(not_a_backup)?);
        }
        database |= path == Path::new("kith.db");
        key |= path == Path::new("keys").join("signing.key");
    }
    archive.rewind()?;
    match (manifest, database, key) {
        (Some(manifest), true, true) => Ok(manifest),
        _ => Err(Error::invalid_param(
            "This file is not a Kith backup: it lacks the manifest, the database or the signing key.",
        )),
    }
}

fn not_a_backup(e: impl std::fmt::Display) -> Error {
    Error::invalid_param(format!("This file is not a Kith backup ({e})."))
}

/// Only plain relative paths: nothing absolute, no `..`.
fn is_safe(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Checks an uploaded backup (already in `upload`, inside the data dir) and stages it to be
/// restored at the next start.
pub fn stage_restore(data_dir: &Path, upload: &Path) -> Result<Manifest> {
    let manifest = check(&mut std::fs::File::open(upload)?)?;
    std::fs::rename(upload, data_dir.join(RESTORE_FILE))?;
    Ok(manifest)
}

/// Where an upload is received before it is checked.
pub fn upload_path(data_dir: &Path) -> Result<PathBuf> {
    let work = data_dir.join(WORK_DIR);
    std::fs::create_dir_all(&work)?;
    Ok(work.join(format!("upload-{}.tar", crate::storage::now_ms())))
}

/// At start, before anything is opened: if a restore is staged, moves the current data
/// aside into `before-restore-<time>/` and unpacks the backup in its place; its config
/// becomes `config_file` (pointing at this data dir). Returns the backup's manifest when
/// one was restored.
pub fn apply_pending_restore(
    data_dir: &Path,
    config_file: Option<&Path>,
) -> Result<Option<Manifest>> {
    let staged = data_dir.join(RESTORE_FILE);
    if !staged.is_file() {
        return Ok(None);
    }
    let manifest = check(&mut std::fs::File::open(&staged)?)?;
    let aside = data_dir.join(format!("before-restore-{}", crate::storage::now_ms()));
    std::fs::create_dir_all(&aside)?;
    for name in REPLACED {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::rename(&path, aside.join(name))?;
        }
    }
    if let Some(config_file) = config_file.filter(|path| path.is_file()) {
        std::fs::copy(config_file, aside.join("kith.toml.current"))?;
    }
    let mut tar = tar::Archive::new(std::fs::File::open(&staged)?);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(true);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path == Path::new(MANIFEST) || !is_safe(&path) {
            continue;
        }
        entry.unpack_in(data_dir)?;
    }
    // The backup's config, pointing at this data dir, becomes the config file.
    let unpacked = data_dir.join("kith.toml");
    if let Some(config_file) = config_file
        && unpacked.is_file()
    {
        let mut config = Config::load(&unpacked)
            .map_err(|problems| Error::internal(format!("the backup's config: {problems:?}")))?;
        let default_dir = config_file.parent().map(Path::to_path_buf);
        config.data_dir =
            (default_dir.as_deref() != Some(data_dir)).then(|| data_dir.to_path_buf());
        if unpacked != config_file {
            std::fs::remove_file(&unpacked)?;
        }
        config.write_to(config_file)?;
    }
    std::fs::remove_file(&staged)?;
    tracing::info!(
        server_name = %manifest.server_name,
        previous = %aside.display(),
        "restored a backup; the data it replaced is kept aside"
    );
    Ok(Some(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_unpacked() {
        assert!(is_safe(Path::new("media/ab/cd/abcd")));
        assert!(!is_safe(Path::new("../etc/passwd")));
        assert!(!is_safe(Path::new("/etc/passwd")));
        assert!(!is_safe(Path::new("media/../../x")));
    }

    #[test]
    fn a_file_that_is_not_a_backup_is_refused_with_a_reason() {
        let mut garbage = std::io::Cursor::new(b"not a tar file at all".repeat(40));
        let error = check(&mut garbage).expect_err("refused");
        assert!(
            error.user_message().contains("not a Kith backup"),
            "{error}"
        );
    }
}
