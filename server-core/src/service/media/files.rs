//! The media files on disk: `<data_dir>/media/<ab>/<cd>/<sha256 hex>`, named by the SHA-256
//! of their bytes, so two uploads of the same bytes share one file. New bytes go to
//! `media/tmp/` first and are fsynced and renamed into place, so a file that has its name
//! is complete and durable; the database row that points at it commits only afterwards.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{
    crypto::random_string,
    error::{Error, ErrorKind, Result},
};

/// The content-addressed file store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
}

/// A file being received: bytes go to a temporary file and into the hash as they arrive.
/// Dropped without [`Files::commit`], it removes its temporary file.
pub struct IncomingFile {
    file: Option<tokio::fs::File>,
    tmp_path: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

/// A complete file in the store.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Files {
    /// The store rooted at `root` (`<data_dir>/media`); creates its folders.
    pub fn open(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root })
    }

    /// Where the file with this hash lives. `sha256` must be 64 hex digits (it always comes
    /// from our own hashing, never from a request).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::internal(format!("bad media hash {sha256:?}")));
        }
        Ok(self
            .root
            .join(&sha256[..2])
            .join(&sha256[2..4])
            .join(sha256))
    }

    /// Starts receiving a file of at most `limit` bytes.
    pub async fn begin(&self, limit: u64) -> Result<IncomingFile> {
        let tmp_path = self.root.join("tmp").join(random_string(24));
        let file = tokio::fs::File::create(&tmp_path).await?;
        Ok(IncomingFile {
            file: Some(file),
            tmp_path,
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Stores bytes that are already in memory (thumbnails, previewed images).
    pub async fn store_bytes(&self, bytes: &[u8]) -> Result<StoredFile> {
        let mut incoming = self.begin(u64::MAX).await?;
        incoming.write(bytes).await?;
        self.commit(incoming).await
    }

    /// Makes a received file durable under its hash and returns its name. If the store
    /// already has those bytes, the new copy is dropped and the existing file is shared.
    pub async fn commit(&self, mut incoming: IncomingFile) -> Result<StoredFile> {
        let mut file = incoming
            .file
            .take()
            .ok_or_else(|| Error::internal("media file committed twice"))?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let sha256 = hex(&std::mem::take(&mut incoming.hasher).finalize());
        let path = self.path_of(&sha256)?;
        let tmp_path = incoming.tmp_path.clone();
        tokio::task::spawn_blocking(move || place(&tmp_path, &path))
            .await
            .map_err(|e| Error::internal(format!("media file task: {e}")))??;
        Ok(StoredFile {
            sha256,
            size: incoming.size,
        })
    }

    /// Opens a stored file for reading.
    pub async fn open_file(&self, sha256: &str) -> Result<tokio::fs::File> {
        let path = self.path_of(sha256)?;
        tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::internal(format!("media file {}: {e}", path.display())))
    }

    /// Reads a stored file whole (for thumbnailing), on a blocking thread.
    pub async fn read_all(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = self.path_of(sha256)?;
        Ok(tokio::fs::read(&path).await?)
    }
}

/// Renames the fsynced temporary file to its final name, unless a file with the same bytes
/// is there already, then fsyncs the file's directory and the two above it (`root/ab/cd/`,
/// any of which `create_dir_all` may just have made) so the name survives a power cut.
/// The fsyncs run on the "already there" path too: that file may be another upload's whose
/// own fsyncs have not finished, and the caller commits the database row after this.
fn place(tmp_path: &Path, path: &Path) -> Result<()> {
    let result = (|| {
        let dir = path
            .parent()
            .ok_or_else(|| Error::internal("media path has no parent"))?;
        if !path.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::rename(tmp_path, path)?;
        }
        #[cfg(unix)]
        for dir in dir.ancestors().take(3) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    // Gone after a rename; otherwise it is a duplicate or a failed write.
    let _ = std::fs::remove_file(tmp_path);
    result
}

impl IncomingFile {
    /// Appends bytes; more than the limit in total is `M_TOO_LARGE`.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "The file is larger than this server accepts.",
            ));
        }
        self.hasher.update(chunk);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::internal("media file already committed"))?;
        file.write_all(chunk).await?;
        Ok(())
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Not committed: an error or a cut-off upload. Best effort; a stray temp file is
            // harmless and `media/tmp/` may be emptied at any time while Kith is stopped.
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
