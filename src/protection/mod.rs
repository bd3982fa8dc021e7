//! Data protection on the box: backups, retention, legal holds and customers' requests (export,
//! erase). Encryption itself lives below: `keys` (master and case keys), `files` (photos) and the
//! SQLCipher store.
//!
//! Invariants:
//! - Every operation here writes an audit row; erasure also writes an outbox `erasure` record for
//!   HQ, in the same transaction as the tombstones.
//! - Erasure destroys the case keys after the tombstones commit. If the box stops in between,
//!   `finish_erasures` (run at start) destroys them: an erased customer's photos never outlive a
//!   restart, in the data directory or in any backup.

pub mod backup;
pub mod retention;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::{now, Actor};
use crate::files::PhotoFiles;
use crate::keys::{KeyError, Keys};
use crate::store::{self, privacy, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    #[error("customer not found")]
    NotFound,
    #[error("case {0} is on legal hold ({1}); release the hold before erasing")]
    OnHold(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("export failed: {0}")]
    Export(String),
}

#[derive(Clone)]
pub struct DataProtection {
    store: Store,
    files: PhotoFiles,
    keys: Arc<Keys>,
    store_id: String,
    retention: retention::Policy,
    schedule: Option<backup::Schedule>,
}

/// For the status page and /metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub key_mode: &'static str,
    pub key_fingerprint: String,
    pub backup_dir: Option<String>,
    pub last_backup: Option<privacy::Run>,
    pub backup_age_secs: Option<i64>,
    pub last_retention: Option<privacy::Run>,
}

impl DataProtection {
    pub fn new(
        store: Store,
        files: PhotoFiles,
        store_id: String,
        retention: retention::Policy,
        schedule: Option<backup::Schedule>,
    ) -> DataProtection {
        let keys = files.keys().clone();
        DataProtection { store, files, keys, store_id, retention, schedule }
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Start-up chores: plaintext photos from an older version encrypted; keys of erased
    /// customers destroyed if a crash came between an erasure's commit and its key destruction.
    pub async fn start_up(&self) -> Result<String, ProtectionError> {
        let rows = self.store.read(|tx| -> Result<_, StoreError> { privacy::kept_photos(tx) }).await?;
        let files = self.files.clone();
        let adopted =
            tokio::task::spawn_blocking(move || rows.iter().filter(|(c, s)| files.adopt_plaintext(c, s).unwrap_or(false)).count())
                .await
                .unwrap_or(0);
        let erased = self.store.read(privacy::erased_case_ids).await?;
        for c in &erased {
            self.keys.destroy(c)?;
        }
        Ok(format!("{adopted} plaintext photos encrypted"))
    }

    pub async fn find(&self, actor: &Actor, q: String) -> Result<Vec<privacy::CustomerEntry>, ProtectionError> {
        let actor = actor.clone();
        Ok(self
            .store
            .write(move |tx| -> Result<_, StoreError> {
                let found = privacy::find_customers(tx, &q)?;
                for c in &found {
                    store::audit::record(tx, &actor, "customer.read", "customer", Some(&c.id), "ok")?;
                }
                Ok(found)
            })
            .await?)
    }

    /// A zip of everything held about the customer: `customer.json` and their photos (decrypted).
    pub async fn export(&self, actor: &Actor, customer_id: String) -> Result<Vec<u8>, ProtectionError> {
        let actor = actor.clone();
        let id = customer_id.clone();
        let (data, photos) = self
            .store
            .write(move |tx| -> Result<_, StoreError> {
                let Some(_) = privacy::customer_entry(tx, &id)? else { return Err(StoreError::NotFound("customer")) };
                let data = privacy::dump(tx, &id)?;
                let photos = privacy::photos_of_customer(tx, &id)?;
                store::audit::record(tx, &actor, "customer.export", "customer", Some(&id), "ok")?;
                Ok((data, photos))
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ProtectionError::NotFound,
                e => e.into(),
            })?;
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ProtectionError> {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            let ex = |e: zip::result::ZipError| ProtectionError::Export(e.to_string());
            zip.start_file("customer.json", opts).map_err(ex)?;
            zip.write_all(&serde_json::to_vec_pretty(&data).unwrap_or_default()).map_err(|e| ProtectionError::Export(e.to_string()))?;
            for p in photos {
                let bytes = files.read(&p.case_id, &p.sha256).map_err(|e| ProtectionError::Export(e.to_string()))?;
                let ext = match p.media_type.as_str() {
                    "image/png" => "png",
                    "image/webp" => "webp",
                    _ => "jpg",
                };
                zip.start_file(format!("photos/{}.{ext}", p.id), opts).map_err(ex)?;
                zip.write_all(&bytes).map_err(|e| ProtectionError::Export(e.to_string()))?;
            }
            Ok(zip.finish().map_err(ex)?.into_inner())
        })
        .await
        .map_err(|e| ProtectionError::Export(e.to_string()))?
    }

    /// Erase a customer: tombstones + outbox + audit in one transaction, then the case keys are
    /// destroyed and the photo files removed. Refused while any of their cases is on legal hold.
    pub async fn erase(&self, actor: &Actor, customer_id: String, reason: &'static str) -> Result<privacy::Erasure, ProtectionError> {
        let actor = actor.clone();
        let at = now();
        let (e, photos) = self
            .store
            .write(move |tx| -> Result<_, ProtectionError> {
                let Some(c) = privacy::customer_entry(tx, &customer_id)? else { return Err(ProtectionError::NotFound) };
                if let Some(h) = c.cases.iter().find(|c| c.legal_hold.is_some()) {
                    return Err(ProtectionError::OnHold(h.id.clone(), h.legal_hold.clone().unwrap_or_default()));
                }
                let photos = privacy::photos_of_customer(tx, &customer_id)?;
                let e = privacy::erase(tx, &actor, &customer_id, reason, &at)?;
                store::audit::record(tx, &actor, &format!("customer.erase.{reason}"), "customer", Some(&customer_id), "ok")?;
                Ok((e, photos))
            })
            .await?;
        for p in &photos {
            self.files.remove(&p.case_id, &p.sha256);
        }
        for c in &e.case_ids {
            self.keys.destroy(c)?;
        }
        tracing::info!(customer.id = %e.customer_id, cases = e.case_ids.len(), reason, "customer data erased");
        Ok(e)
    }

    pub async fn set_legal_hold(&self, actor: &Actor, case_id: String, reason: Option<String>) -> Result<(), ProtectionError> {
        if let Some(r) = &reason {
            if r.trim().is_empty() || r.chars().count() > 200 || r.chars().any(char::is_control) {
                return Err(ProtectionError::Invalid("reason: 1-200 characters, no control characters".into()));
            }
        }
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StoreError> {
                privacy::set_legal_hold(tx, &case_id, reason.as_deref())?;
                let event = match reason.as_deref() {
                    Some(r) => store::cases::Event::note("legal_hold", r),
                    None => store::cases::Event { kind: "legal_hold_released", from: None, to: None, reason: None },
                };
                store::cases::note(tx, &case_id, &actor, &now(), false, event)?;
                let action = if reason.is_some() { "case.legal_hold" } else { "case.legal_hold_release" };
                store::audit::record(tx, &actor, action, "case", Some(&case_id), "ok")
            })
            .await?;
        Ok(())
    }

    /// Apply the retention policy once and record what it removed.
    pub async fn apply_retention(&self, actor: &Actor) -> Result<retention::Report, ProtectionError> {
        let p = self.retention.clone();
        let t = chrono::Utc::now();
        let (photo_cut, personal_cut) =
            (retention::Policy::cutoff(p.intake_photos_days, t), retention::Policy::cutoff(p.closed_case_personal_days, t));
        let mut report = retention::Report::default();
        let photos = self.store.read(move |tx| privacy::photos_due(tx, &photo_cut)).await?;
        for ph in photos {
            let (id, at) = (ph.id.clone(), now());
            let a = actor.clone();
            self.store
                .write(move |tx| -> Result<(), StoreError> {
                    privacy::mark_photo_removed(tx, &id, "retention", &at)?;
                    // Audited, but not on the case's timeline: a timeline event would count as the case
                    // changing and restart the clock of its personal data's retention.
                    store::audit::record(tx, &a, "photo.retention_remove", "photo", Some(&id), "ok")
                })
                .await?;
            self.files.remove(&ph.case_id, &ph.sha256);
            report.photos_removed += 1;
        }
        for c in self.store.read(move |tx| privacy::customers_due(tx, &personal_cut)).await? {
            match self.erase(actor, c, "retention").await {
                Ok(_) => report.customers_erased += 1,
                Err(ProtectionError::OnHold(..)) => {}
                Err(e) => return Err(e),
            }
        }
        let (survey_cut, audit_cut) = (retention::Policy::cutoff(p.survey_answers_days, t), retention::Policy::cutoff(p.audit_log_days, t));
        let a = actor.clone();
        let (s, au) = self
            .store
            .write(move |tx| -> Result<_, StoreError> {
                let s = privacy::expire_survey_answers(tx, &survey_cut)?;
                let au = privacy::expire_audit(tx, &audit_cut)?;
                store::audit::record(tx, &a, "retention.run", "appliance", None, "ok")?;
                Ok((s, au))
            })
            .await?;
        report.survey_comments_blanked = s;
        report.audit_rows_removed = au;
        let summary = report.summary();
        self.store.write(move |tx| privacy::record_run(tx, "retention", true, &summary, &now())).await?;
        tracing::info!(report = %report.summary(), "retention applied");
        Ok(report)
    }

    /// Write a backup archive to `out` and record the run.
    pub async fn backup(&self, actor: &Actor, out: PathBuf) -> Result<backup::BackupReport, ProtectionError> {
        let (store, files, keys, id) = (self.store.clone(), self.files.clone(), self.keys.clone(), self.store_id.clone());
        let r = tokio::task::spawn_blocking(move || backup::write(&store, &files, &keys, &id, &out))
            .await
            .map_err(|e| ProtectionError::Invalid(format!("backup task failed: {e}")))?;
        let (ok, text) = match &r {
            Ok(b) => (true, format!("{} ({} bytes, {} photos, {} ms)", b.file.display(), b.bytes, b.photos, b.millis)),
            Err(e) => (false, e.to_string()),
        };
        let a = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StoreError> {
                privacy::record_run(tx, "backup", ok, &text, &now())?;
                store::audit::record(tx, &a, "backup.write", "appliance", None, if ok { "ok" } else { "failed" })
            })
            .await?;
        Ok(r?)
    }

    /// The scheduled backup, if one is configured and due; prunes old copies.
    pub async fn scheduled_backup(&self) -> Result<Option<backup::BackupReport>, ProtectionError> {
        let Some(s) = self.schedule.clone() else { return Ok(None) };
        let r = self.backup(&Actor::system("backup"), s.dir.join(backup::scheduled_name(&self.store_id))).await?;
        let pruned = backup::prune(&s.dir, s.keep);
        if pruned > 0 {
            tracing::info!(pruned, keep = s.keep, "old backups removed");
        }
        Ok(Some(r))
    }

    pub async fn status(&self) -> Result<Status, ProtectionError> {
        let (last_backup, last_retention) = self
            .store
            .read(|tx| -> Result<_, StoreError> {
                Ok((privacy::last_run(tx, "backup", true)?, privacy::last_run(tx, "retention", false)?))
            })
            .await?;
        let age = last_backup
            .as_ref()
            .and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.at).ok())
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
        Ok(Status {
            key_mode: self.keys.mode().as_str(),
            key_fingerprint: self.keys.fingerprint(),
            backup_dir: self.schedule.as_ref().map(|s| s.dir.display().to_string()),
            last_backup,
            backup_age_secs: age,
            last_retention,
        })
    }

    /// The daily jobs: a backup when `[backup]` is set and one is due, and retention once a day.
    /// Runs until the process ends; each failure is logged and recorded, never fatal.
    pub async fn run_jobs(self) {
        let day = std::time::Duration::from_secs(24 * 3600);
        loop {
            let st = self.status().await.ok();
            let due = |last: Option<&privacy::Run>, every: std::time::Duration| {
                last.and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.at).ok())
                    .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default() >= every)
                    .unwrap_or(true)
            };
            if let Some(s) = &self.schedule {
                if due(st.as_ref().and_then(|s| s.last_backup.as_ref()), s.interval) {
                    if let Err(e) = self.scheduled_backup().await {
                        tracing::error!(error = %e, "scheduled backup failed");
                    }
                }
            }
            if due(st.as_ref().and_then(|s| s.last_retention.as_ref()), day) {
                if let Err(e) = self.apply_retention(&Actor::system("retention")).await {
                    tracing::error!(error = %e, "retention run failed");
                    let text = e.to_string();
                    let _ = self.store.write(move |tx| privacy::record_run(tx, "retention", false, &text, &now())).await;
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    }
}
