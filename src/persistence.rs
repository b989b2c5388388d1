//! The inventory file (`PROM_INV_FILE`): loaded once at start, rewritten after
//! every change. Writes are atomic (temporary file in the same directory,
//! fsync, rename, fsync of the directory), so a crash leaves either the old or
//! the new file, never a mix. A file that exists but cannot be read, decrypted
//! or parsed is an error for the caller to stop on; this module never
//! overwrites such a file on its own. Encryption is `crypto`'s business.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::crypto::{CryptoError, InventoryCipher};
use crate::inventory::{InvalidInventory, Inventory};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read inventory file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot decrypt inventory file {path} with PROM_ENCRYPT_KEY: {source}")]
    Decrypt { path: PathBuf, source: CryptoError },
    #[error("inventory file {path} decrypted but is not a valid inventory: {source}")]
    Parse {
        path: PathBuf,
        source: InvalidInventory,
    },
    #[error("cannot write inventory file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A leader with an older epoch tried to replace the file a newer leader wrote.
    #[error("refused to write inventory file {path}: it records leadership epoch {recorded}, this replica's epoch {attempted} is older or was another replica's")]
    StaleEpoch {
        path: PathBuf,
        recorded: u64,
        attempted: u64,
    },
    /// The writer's leadership deadline passed before it could write.
    #[error(
        "did not write inventory file {path}: this replica's leadership ended before the write"
    )]
    NoLongerLeader { path: PathBuf },
}

/// What a fenced write found under the lock.
enum FencedWrite {
    Written,
    /// The file already holds this version (or a newer one) of this leadership.
    Current,
    /// A newer leadership (this epoch) wrote the file.
    Stale(u64),
    /// The leadership deadline passed while waiting.
    TooLate,
}

/// Which leadership wrote the file, kept beside it in `<file>.epoch` as
/// `<epoch> <version> <incarnation> <holder>` (the file itself keeps the Java
/// envelope untouched). Versions only compare within one incarnation of the
/// inventory in Redis (a restore into an empty Redis starts a new one at
/// version 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileStamp {
    pub epoch: u64,
    pub version: u64,
    pub incarnation: String,
    /// The replica that led with `epoch`: an epoch is one leadership, so the
    /// same number from another replica (Redis lost its epoch key and handed
    /// it out twice) is refused. Empty in stamps of older versions.
    pub holder: String,
}

impl FileStamp {
    /// Whether a leader with `epoch` (held by `holder`) may no longer write:
    /// a newer epoch was recorded, or this one by another replica.
    fn fences_out(&self, epoch: u64, holder: &str) -> bool {
        let other_holder = epoch == self.epoch && !self.holder.is_empty() && self.holder != holder;
        epoch < self.epoch || other_holder
    }

    fn line(&self) -> String {
        let field = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "{} {} {} {}\n",
            self.epoch,
            self.version,
            field(&self.incarnation),
            field(&self.holder)
        )
    }
}

/// The encrypted inventory file.
#[derive(Debug)]
pub struct InventoryFile {
    path: PathBuf,
    cipher: Arc<InventoryCipher>,
    /// Serialises writers and remembers the newest version on disk, so an
    /// older snapshot never replaces a newer one.
    written_version: tokio::sync::Mutex<u64>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl InventoryFile {
    pub fn new(path: PathBuf, cipher: Arc<InventoryCipher>) -> Self {
        InventoryFile {
            path,
            cipher,
            written_version: tokio::sync::Mutex::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// The epoch and version of the last fleet write (zero when none
    /// recorded); the tests' synchronous [`Self::current_stamp`].
    #[cfg(test)]
    fn stamp(&self) -> FileStamp {
        read_stamp(&self.sibling(".epoch"))
    }

    /// The stamp as on disk now (a leader in another process writes it),
    /// read off the async threads.
    pub async fn current_stamp(&self) -> FileStamp {
        let text = tokio::fs::read_to_string(self.sibling(".epoch"))
            .await
            .unwrap_or_default();
        parse_stamp(&text)
    }

    /// A leader's write: replaces the file only when `stamp` is newer than the
    /// recorded one, checked and written under an exclusive lock on
    /// `<file>.lock` so replicas sharing the volume cannot interleave. A lower
    /// epoch is refused ([`FileError::StaleEpoch`]); an older or equal version
    /// of the same epoch and incarnation is skipped (`Ok(false)`); nothing is
    /// written once `not_after` (the leadership deadline) has passed, however
    /// long the lock took ([`FileError::NoLongerLeader`]).
    pub async fn save_fenced(
        &self,
        inventory: &Inventory,
        stamp: FileStamp,
        not_after: std::time::Instant,
    ) -> Result<bool, FileError> {
        let _serial = self.written_version.lock().await;
        let envelope = self.cipher.encrypt(&inventory.to_json());
        let path = self.path.clone();
        let lock_path = self.sibling(".lock");
        let stamp_path = self.sibling(".epoch");
        let attempted = stamp.clone();
        let outcome = self
            .blocking_write(move || -> std::io::Result<FencedWrite> {
                let _lock = lock_exclusively(&path, &lock_path)?;
                let recorded = read_stamp(&stamp_path);
                if recorded.fences_out(stamp.epoch, &stamp.holder) {
                    return Ok(FencedWrite::Stale(recorded.epoch));
                }
                if stamp.epoch == recorded.epoch
                    && stamp.incarnation == recorded.incarnation
                    && stamp.version <= recorded.version
                {
                    return Ok(FencedWrite::Current);
                }
                if std::time::Instant::now() >= not_after {
                    return Ok(FencedWrite::TooLate);
                }
                // Fence first: raise the epoch before touching the file, so a
                // crash or a failed write leaves a file that an older leader
                // still cannot replace. The version stays the one the file
                // holds until the file is written, so a failed write is
                // retried instead of being taken for done.
                if recorded.epoch < stamp.epoch {
                    let fence = FileStamp {
                        epoch: stamp.epoch,
                        holder: stamp.holder.clone(),
                        ..recorded
                    };
                    write_atomic(&stamp_path, fence.line().as_bytes())?;
                }
                write_atomic(&path, envelope.as_bytes())?;
                write_atomic(&stamp_path, stamp.line().as_bytes())?;
                Ok(FencedWrite::Written)
            })
            .await?;
        match outcome {
            FencedWrite::Written => {
                tracing::debug!(path = %self.path.display(), epoch = attempted.epoch, version = attempted.version, devices = inventory.devices.len(), "inventory file written");
                Ok(true)
            }
            FencedWrite::Current => Ok(false),
            FencedWrite::Stale(recorded) => Err(FileError::StaleEpoch {
                path: self.path.clone(),
                recorded,
                attempted: attempted.epoch,
            }),
            FencedWrite::TooLate => Err(FileError::NoLongerLeader {
                path: self.path.clone(),
            }),
        }
    }

    /// A new leader's first step before it puts the inventory back into
    /// Redis: raises the stamp's epoch to `epoch` under the file's lock, so
    /// an older leader can no longer write (and acknowledge) a version the
    /// copies it reads next would miss. A newer epoch in the stamp, or this
    /// one from another holder, is refused ([`FileError::StaleEpoch`]).
    pub async fn fence(&self, epoch: u64, holder: &str) -> Result<(), FileError> {
        let _serial = self.written_version.lock().await;
        let path = self.path.clone();
        let lock_path = self.sibling(".lock");
        let stamp_path = self.sibling(".epoch");
        let holder = holder.to_string();
        let stale = self
            .blocking_write(move || -> std::io::Result<Option<u64>> {
                let _lock = lock_exclusively(&path, &lock_path)?;
                let recorded = read_stamp(&stamp_path);
                if recorded.fences_out(epoch, &holder) {
                    return Ok(Some(recorded.epoch));
                }
                if recorded.epoch < epoch {
                    let fence = FileStamp {
                        epoch,
                        holder,
                        ..recorded
                    };
                    write_atomic(&stamp_path, fence.line().as_bytes())?;
                }
                Ok(None)
            })
            .await?;
        match stale {
            None => Ok(()),
            Some(recorded) => Err(FileError::StaleEpoch {
                path: self.path.clone(),
                recorded,
                attempted: epoch,
            }),
        }
    }

    /// Runs file-writing `work` off the async threads; an I/O error names the file.
    async fn blocking_write<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, FileError> {
        tokio::task::spawn_blocking(work)
            .await
            .expect("file writer task panicked")
            .map_err(|source| FileError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads the file. `Ok(None)` when there is no file yet. Temporary files
    /// left by a write that was killed midway are removed.
    pub fn load(&self) -> Result<Option<Inventory>, FileError> {
        self.remove_stale_temp_files();
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let plaintext = if first == Some(&b'{') {
            // A plaintext file (hand-written, or from a build without a key):
            // readable, and the next write encrypts it.
            tracing::warn!(path = %self.path.display(), "inventory file is plaintext JSON; it will be encrypted on the next change");
            bytes
        } else {
            self.cipher
                .decrypt(&bytes)
                .map_err(|source| FileError::Decrypt {
                    path: self.path.clone(),
                    source,
                })?
        };
        Inventory::from_json(&plaintext)
            .map(Some)
            .map_err(|source| FileError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    fn remove_stale_temp_files(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(path = %entry.path().display(), "removed a temporary file left by an interrupted write")
                    }
                    Err(e) => {
                        tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove stale temporary file")
                    }
                }
            }
        }
    }

    /// Records that the file already holds `version` (the one just loaded), so
    /// only real changes rewrite it.
    pub fn mark_written(&self, version: u64) {
        if let Ok(mut written) = self.written_version.try_lock() {
            *written = version.max(*written);
        }
    }

    /// Writes `inventory` as `version` unless a newer version was written
    /// already. Returns whether the file was replaced.
    pub async fn save(&self, inventory: &Inventory, version: u64) -> Result<bool, FileError> {
        let mut written = self.written_version.lock().await;
        if version != 0 && version <= *written {
            return Ok(false);
        }
        let envelope = self.cipher.encrypt(&inventory.to_json());
        let path = self.path.clone();
        self.blocking_write(move || write_atomic(&path, envelope.as_bytes()))
            .await?;
        *written = version.max(*written);
        tracing::debug!(path = %self.path.display(), version, devices = inventory.devices.len(), "inventory file written");
        Ok(true)
    }
}

/// Applies inventory changes to the store and writes each new version
/// through to the file, so nothing an operator entered is lost on restart.
pub struct InventoryWriter {
    store: Arc<dyn crate::store::Store>,
    file: Arc<InventoryFile>,
    telemetry: Arc<crate::telemetry::Telemetry>,
    /// Standalone: every change is written before `apply` returns. In a fleet
    /// only the leader writes the file (`persist_fenced`), for every replica's changes.
    write_through: bool,
    /// Changes applied here are observed in the order the store applied
    /// them (two concurrent discoveries must not leave the older count).
    observe_order: tokio::sync::Mutex<()>,
    /// Fleet: a change is acknowledged once the leader has written it to
    /// the file (what an emptied Redis is restored from), waiting at most
    /// this long; `None` standalone, where `write_through` writes it here.
    leader_writes_within: Option<std::time::Duration>,
}

impl InventoryWriter {
    pub fn new(
        store: Arc<dyn crate::store::Store>,
        file: Arc<InventoryFile>,
        telemetry: Arc<crate::telemetry::Telemetry>,
        write_through: bool,
    ) -> Self {
        InventoryWriter {
            store,
            file,
            telemetry,
            write_through,
            observe_order: tokio::sync::Mutex::new(()),
            leader_writes_within: None,
        }
    }

    /// Fleet mode: changes are acknowledged once the leader wrote them to
    /// the shared file, within `within` (else the change is reported as not
    /// yet safe).
    pub fn acknowledge_when_leader_wrote(mut self, within: std::time::Duration) -> Self {
        self.leader_writes_within = Some(within);
        self
    }

    pub fn file(&self) -> &Arc<InventoryFile> {
        &self.file
    }

    pub fn store(&self) -> &Arc<dyn crate::store::Store> {
        &self.store
    }

    /// Applies `change` (an API change: any replica may); on success the new
    /// version is on disk before this returns.
    pub async fn apply(
        &self,
        change: crate::store::InventoryChange<'_>,
    ) -> Result<crate::store::InventorySnapshot, crate::store::StoreError> {
        self.apply_if(change, None).await
    }

    /// [`Self::apply`] when the inventory is still one `if_match` names
    /// (checked atomically with the write); `None`: unconditionally.
    pub async fn apply_if(
        &self,
        change: crate::store::InventoryChange<'_>,
        if_match: Option<&crate::store::IfMatch>,
    ) -> Result<crate::store::InventorySnapshot, crate::store::StoreError> {
        self.write(change, None, if_match).await
    }

    /// Applies a change carrying `fence`, the leadership epoch of a leader-only
    /// task (scheduled discovery); a stale epoch is refused.
    pub async fn apply_fenced(
        &self,
        change: crate::store::InventoryChange<'_>,
        fence: crate::store::Fence,
    ) -> Result<crate::store::InventorySnapshot, crate::store::StoreError> {
        self.write(change, fence, None).await
    }

    async fn write(
        &self,
        change: crate::store::InventoryChange<'_>,
        fence: crate::store::Fence,
        if_match: Option<&crate::store::IfMatch>,
    ) -> Result<crate::store::InventorySnapshot, crate::store::StoreError> {
        let snapshot = {
            let _order = self.observe_order.lock().await;
            let snapshot = self.store.update_inventory(change, fence, if_match).await?;
            self.observe(&snapshot);
            snapshot
        };
        if self.write_through {
            self.persist(&snapshot).await.map_err(|e| {
                crate::store::StoreError::Unavailable(format!(
                    "the change is live but was not saved: {e}"
                ))
            })?;
        }
        if let Some(within) = self.leader_writes_within {
            if !self.leader_wrote(&snapshot, within).await {
                self.telemetry.inventory_changes_not_durable.inc();
                tracing::warn!(
                    version = snapshot.version,
                    "an inventory change is in Redis but no leader wrote it to the file in time"
                );
                return Err(crate::store::StoreError::Unavailable(format!(
                    "the change is stored in Redis (version {}) but no leader wrote it to the inventory file {} within {within:?}; a leader writes it when it can, and until then a Redis restart without persistence or a flush would lose it (do all replicas share the file's volume?)",
                    snapshot.version,
                    self.file.path().display()
                )));
            }
        }
        Ok(snapshot)
    }

    /// Waits until the file's stamp shows `snapshot`'s version (or a later
    /// one of the same inventory in Redis), at most `within`.
    async fn leader_wrote(
        &self,
        snapshot: &crate::store::InventorySnapshot,
        within: std::time::Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let stamp = self.file.current_stamp().await;
            if *stamp.incarnation == *snapshot.incarnation && stamp.version >= snapshot.version {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Keeps the inventory gauges and per-device series in step with `snapshot`
    /// (also for changes other replicas made).
    pub fn observe(&self, snapshot: &crate::store::InventorySnapshot) {
        self.telemetry.retain_devices(
            snapshot
                .inventory
                .devices
                .iter()
                .map(|d| d.sys_name.as_str()),
        );
        self.telemetry
            .inventory_devices
            .set(snapshot.inventory.devices.len() as i64);
        self.telemetry
            .discovery_seeds
            .set(snapshot.inventory.discovery_seeds.len() as i64);
    }

    /// The leader's write-through of `snapshot` (of Redis inventory
    /// `incarnation`) under its epoch, valid until `deadline`.
    pub async fn persist_fenced(
        &self,
        snapshot: &crate::store::InventorySnapshot,
        incarnation: &str,
        epoch: u64,
        holder: &str,
        deadline: std::time::Instant,
    ) -> Result<bool, FileError> {
        let stamp = FileStamp {
            epoch,
            version: snapshot.version,
            incarnation: incarnation.to_string(),
            holder: holder.to_string(),
        };
        // The run loop must not hang on a stuck volume past the leadership.
        let budget = deadline.saturating_duration_since(std::time::Instant::now());
        let result = tokio::time::timeout(
            budget,
            self.file.save_fenced(&snapshot.inventory, stamp, deadline),
        )
        .await
        .unwrap_or_else(|_| {
            Err(FileError::NoLongerLeader {
                path: self.file.path().to_path_buf(),
            })
        });
        let outcome = match &result {
            Ok(_) => "ok",
            Err(FileError::StaleEpoch { .. } | FileError::NoLongerLeader { .. }) => "stale_epoch",
            Err(_) => "error",
        };
        self.telemetry
            .inventory_file_writes
            .with_label_values(&[outcome])
            .inc();
        if let Err(e) = &result {
            tracing::error!(error = %e, "inventory file write failed");
        }
        result
    }

    /// Writes `snapshot` to the file (skipped when a newer version is there).
    pub async fn persist(
        &self,
        snapshot: &crate::store::InventorySnapshot,
    ) -> Result<(), FileError> {
        match self.file.save(&snapshot.inventory, snapshot.version).await {
            Ok(_) => {
                self.telemetry
                    .inventory_file_writes
                    .with_label_values(&["ok"])
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.telemetry
                    .inventory_file_writes
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(error = %e, "inventory file write failed");
                Err(e)
            }
        }
    }
}

/// Creates `file`'s folder if needed and takes the exclusive lock on
/// `lock_path` (held until the returned handle is dropped), so replicas
/// sharing the volume write one at a time.
fn lock_exclusively(file: &Path, lock_path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path)?;
    lock.lock()?;
    Ok(lock)
}

fn read_stamp(path: &Path) -> FileStamp {
    parse_stamp(&std::fs::read_to_string(path).unwrap_or_default())
}

fn parse_stamp(text: &str) -> FileStamp {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let text_field = |i: usize| {
        fields
            .get(i)
            .filter(|f| **f != "-")
            .map(|f| f.to_string())
            .unwrap_or_default()
    };
    match (number(0), number(1)) {
        (Some(epoch), Some(version)) => FileStamp {
            epoch,
            version,
            incarnation: text_field(2),
            holder: text_field(3),
        },
        _ => FileStamp::default(),
    }
}

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        // Owner-only: the file holds SNMP credentials.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path) -> InventoryFile {
        InventoryFile::new(
            dir.join("inv.json"),
            Arc::new(InventoryCipher::new(b"0123456789ABCDEF").unwrap()),
        )
    }

    #[tokio::test]
    async fn save_load_and_version_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        assert!(f.load().unwrap().is_none());
        let mut inv = Inventory::default();
        inv.discovery_seeds.push(
            crate::inventory::DiscoverySeed::from_json(br#"{"potentialTargets":["127.0.0.1"]}"#)
                .unwrap(),
        );
        assert!(f.save(&inv, 2).await.unwrap());
        assert!(
            !f.save(&Inventory::default(), 1).await.unwrap(),
            "older version must not replace newer"
        );
        assert_eq!(f.load().unwrap().unwrap(), inv);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "credentials are readable by the owner only"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files remain");
    }

    #[tokio::test]
    async fn a_new_leaders_fence_refuses_the_older_leaders_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let stamp = |epoch, version, holder: &str| FileStamp {
            epoch,
            version,
            incarnation: "a".into(),
            holder: holder.into(),
        };
        let inv = Inventory::default();
        assert!(f
            .save_fenced(&inv, stamp(3, 5, "old"), later)
            .await
            .unwrap());
        f.fence(4, "new").await.unwrap();
        // The version stays: only the epoch and its holder moved.
        assert_eq!(f.stamp(), stamp(4, 5, "new"));
        let err = f
            .save_fenced(&inv, stamp(3, 6, "old"), later)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FileError::StaleEpoch { recorded: 4, .. }),
            "{err}"
        );
        // Fencing again, or by an older or rival leader.
        f.fence(4, "new").await.unwrap();
        assert!(matches!(
            f.fence(3, "old").await.unwrap_err(),
            FileError::StaleEpoch {
                recorded: 4,
                attempted: 3,
                ..
            }
        ));
        assert!(f.fence(4, "rival").await.is_err());
        // The new leader writes on.
        assert!(f
            .save_fenced(&inv, stamp(4, 6, "new"), later)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn fenced_saves_never_go_back_in_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let stamp = |epoch, version, incarnation: &str| FileStamp {
            epoch,
            version,
            incarnation: incarnation.into(),
            holder: "r1".into(),
        };
        let mut inv = Inventory::default();
        assert!(f.save_fenced(&inv, stamp(3, 5, "a"), later).await.unwrap());
        assert_eq!(f.stamp(), stamp(3, 5, "a"));
        // Same leadership, same or older version: nothing to write.
        assert!(!f.save_fenced(&inv, stamp(3, 5, "a"), later).await.unwrap());
        assert!(!f.save_fenced(&inv, stamp(3, 4, "a"), later).await.unwrap());
        // A restore started a new incarnation at version 1: written.
        assert!(f.save_fenced(&inv, stamp(3, 1, "b"), later).await.unwrap());
        // An older leader is refused and the file stays as it was.
        let before = std::fs::read(f.path()).unwrap();
        inv.discovery_seeds.push(
            crate::inventory::DiscoverySeed::from_json(br#"{"potentialTargets":["127.0.0.1"]}"#)
                .unwrap(),
        );
        let err = f
            .save_fenced(&inv, stamp(2, 99, "b"), later)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FileError::StaleEpoch {
                    recorded: 3,
                    attempted: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read(f.path()).unwrap(), before);
        // A leadership whose deadline passed writes nothing.
        let past = std::time::Instant::now();
        let err = f
            .save_fenced(&inv, stamp(4, 1, "b"), past)
            .await
            .unwrap_err();
        assert!(matches!(err, FileError::NoLongerLeader { .. }), "{err}");
        assert_eq!(std::fs::read(f.path()).unwrap(), before);
        // A newer epoch writes.
        assert!(f.save_fenced(&inv, stamp(4, 1, "b"), later).await.unwrap());
        assert_eq!(f.load().unwrap().unwrap(), inv);
        assert_eq!(f.stamp(), stamp(4, 1, "b"));
        // The same epoch from another replica (Redis handed it out twice
        // after losing its epoch key) is refused, whatever its version.
        let twin = FileStamp {
            holder: "r2".into(),
            ..stamp(4, 7, "b")
        };
        let err = f
            .save_fenced(&Inventory::default(), twin, later)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FileError::StaleEpoch {
                    recorded: 4,
                    attempted: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(f.load().unwrap().unwrap(), inv);
        // Stamps of older versions (three fields) still read.
        std::fs::write(f.sibling(".epoch"), "9 2 abc\n").unwrap();
        assert_eq!(
            f.stamp(),
            FileStamp {
                epoch: 9,
                version: 2,
                incarnation: "abc".into(),
                holder: String::new()
            }
        );
    }

    #[tokio::test]
    async fn a_failed_fenced_write_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let stamp = |epoch, version| FileStamp {
            epoch,
            version,
            incarnation: "a".into(),
            holder: "r1".into(),
        };
        let inv = Inventory::default();
        assert!(f.save_fenced(&inv, stamp(3, 1), later).await.unwrap());
        // The file cannot be replaced (a directory in its way).
        std::fs::remove_file(f.path()).unwrap();
        std::fs::create_dir(f.path()).unwrap();
        let err = f.save_fenced(&inv, stamp(4, 2), later).await.unwrap_err();
        assert!(matches!(err, FileError::Write { .. }), "{err}");
        // The epoch is fenced, the version still the one the file holds.
        assert_eq!(f.stamp(), stamp(4, 1));
        assert!(matches!(
            f.save_fenced(&inv, stamp(3, 9), later).await,
            Err(FileError::StaleEpoch { .. })
        ));
        // Once the way is clear the same version is written, not skipped.
        std::fs::remove_dir(f.path()).unwrap();
        assert!(f.save_fenced(&inv, stamp(4, 2), later).await.unwrap());
        assert_eq!(f.load().unwrap().unwrap(), inv);
        assert_eq!(f.stamp(), stamp(4, 2));
    }

    #[test]
    fn unreadable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        std::fs::write(f.path(), b"dGhpcyBpcyBub3QgYW4gaW52ZW50b3J5IGF0IGFsbA==").unwrap();
        assert!(matches!(f.load(), Err(FileError::Decrypt { .. })));
        std::fs::write(f.path(), b"").unwrap();
        assert!(matches!(f.load(), Err(FileError::Decrypt { .. })));
        std::fs::write(f.path(), b"{\"devices\": 3}").unwrap();
        assert!(matches!(f.load(), Err(FileError::Parse { .. })));
    }

    #[tokio::test]
    async fn interrupted_write_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        f.save(&Inventory::default(), 1).await.unwrap();
        let stale = dir.path().join(".inv.json.tmp-123-4");
        std::fs::write(&stale, b"half").unwrap();
        let unrelated = dir.path().join("notes.txt");
        std::fs::write(&unrelated, b"keep").unwrap();
        assert!(f.load().unwrap().is_some());
        assert!(!stale.exists() && unrelated.exists());
    }
}
