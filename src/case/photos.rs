//! Photo analysis in the case flow: a worker thread that owns the detector takes photos that have
//! no analysis yet (the `photo_analysis` table is its persistent queue, so a restart loses nothing
//! and the work is bounded by what was uploaded), runs the quality gate and the detector, and
//! stores quality, shot guess and detections. Damage classes of a dealer's model become findings;
//! below the review threshold they go to manual review. With no damage model the case is marked
//! "needs advisor assessment" — never a made-up finding. Inference never runs on the async runtime.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::domain::{now, Actor, Photo};
use crate::media::PhotoFiles;
use crate::store::cases::Event;
use crate::store::photos::{self as repo, Analysis};
use crate::store::{self, Store, StoreError};
use crate::vision::measure::{self, Reference};
use crate::vision::quality::{assess, QualityConfig};
use crate::vision::{Detection, Detector, Role};

/// Handle to the worker: uploads call `notify` so it looks at the queue now.
pub struct PhotoAnalyzer {
    wake: mpsc::SyncSender<()>,
    pub model: Option<String>,
}

pub struct AnalyzerConfig {
    pub review_threshold: f32,
    pub quality: QualityConfig,
}

impl PhotoAnalyzer {
    pub fn start(store: Store, files: PhotoFiles, detector: Option<Box<dyn Detector>>, cfg: AnalyzerConfig) -> PhotoAnalyzer {
        let (wake, rx) = mpsc::sync_channel::<()>(1);
        let model = detector.as_ref().map(|d| d.card().name.clone());
        let rt = tokio::runtime::Handle::try_current().ok();
        let spawned = std::thread::Builder::new().name("photo-analysis".into()).spawn(move || {
            let Some(rt) = rt else { return };
            worker(rt, store, files, detector, cfg, rx)
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the photo analysis worker; photos stay unanalysed");
        }
        PhotoAnalyzer { wake, model }
    }

    pub fn notify(&self) {
        // A full channel already means "look again": nothing to add.
        let _ = self.wake.try_send(());
    }
}

fn worker(
    rt: tokio::runtime::Handle,
    store: Store,
    files: PhotoFiles,
    detector: Option<Box<dyn Detector>>,
    cfg: AnalyzerConfig,
    rx: mpsc::Receiver<()>,
) {
    let system = Actor::system("photo-analysis");
    loop {
        let next = rt.block_on(store.read(repo::next_unanalysed));
        match next {
            Ok(Some(photo)) => {
                let analysis = analyse(&files, detector.as_deref(), &cfg, &photo);
                let damage_model = detector.as_ref().is_some_and(|d| d.card().roles.iter().any(|r| matches!(r, Role::Damage(_))));
                let saved = rt.block_on(save(&store, &system, &photo, analysis, damage_model, cfg.review_threshold));
                match saved {
                    Ok(()) => {}
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, photo = %photo.id, "could not store a photo analysis; retrying later");
                        std::thread::sleep(Duration::from_secs(2));
                    }
                }
            }
            Ok(None) => match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "photo analysis queue unreadable; retrying");
                if let Err(mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(Duration::from_secs(2)) {
                    return;
                }
            }
        }
    }
}

/// Decode, detect, assess. Failures become a `failed` analysis so the queue moves on.
fn analyse(files: &PhotoFiles, detector: Option<&dyn Detector>, cfg: &AnalyzerConfig, photo: &Photo) -> (Analysis, Vec<Detection>) {
    let path = files.path_for(&photo.sha256);
    let base = Analysis {
        photo_id: photo.id.clone(),
        status: "failed".into(),
        model: detector.map(|d| d.card().name.clone()),
        quality: None,
        detections: None,
        shot: None,
        error: None,
        analysed_at: now(),
    };
    let img = match crate::vision::preprocess::open_image(&path) {
        Ok(i) => i,
        Err(e) => return (Analysis { error: Some(e.to_string()), ..base }, Vec::new()),
    };
    let dets = match detector.map(|d| d.detect(&img)) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return (Analysis { error: Some(e.to_string()), ..base }, Vec::new()),
        None => None,
    };
    let report = assess(&img, dets.as_deref(), &cfg.quality);
    let reasons: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    let mut quality = serde_json::to_value(&report).unwrap_or_default();
    quality["messages"] = json!(reasons);
    let shot = serde_json::to_value(report.shot).ok().and_then(|v| v.as_str().map(String::from));
    let dets = dets.unwrap_or_default();
    (
        Analysis {
            status: "done".into(),
            quality: Some(quality),
            detections: Some(serde_json::to_value(&dets).unwrap_or_default()),
            shot,
            ..base
        },
        dets,
    )
}

/// What the customer said about the length of damage on `part`, and the first statement more than
/// 15 % off the measured length (a person then decides). One rule for photos and marked references.
pub(crate) fn stated_vs_measured(
    tx: &store::Tx,
    case_id: &str,
    part: &str,
    measured_cm: f64,
) -> Result<(Vec<f64>, Option<f64>), StoreError> {
    let stated = repo::stated_lengths(tx, case_id, part)?;
    let off = stated.iter().copied().find(|s| measure::disagreement(*s, measured_cm).is_some());
    Ok((stated, off))
}

/// The part a damage box lies on (a `part:` detection of the same photo) and, when that part has a
/// typical size, the damage's length in cm.
fn locate_and_measure(damage: &Detection, dets: &[Detection]) -> (Option<String>, Option<measure::Measurement>) {
    let parts: Vec<(&str, [f32; 4])> = dets
        .iter()
        .filter_map(|d| match &d.role {
            Role::Part(p) if crate::intake::Part::from_id(p).is_some() => Some((p.as_str(), d.bbox)),
            _ => None,
        })
        .collect();
    let boxes: Vec<[f32; 4]> = parts.iter().map(|(_, b)| *b).collect();
    let Some(i) = measure::part_under(&damage.bbox, &boxes) else { return (None, None) };
    let (name, bbox) = parts[i];
    let measured =
        PANEL_SIZES.get(name).and_then(|size| measure::measure(&damage.bbox, &Reference::Part { name: name.into(), bbox, size }));
    (Some(name.to_string()), measured)
}

static PANEL_SIZES: std::sync::LazyLock<measure::PanelSizes> = std::sync::LazyLock::new(measure::PanelSizes::builtin);

async fn save(
    store: &Store,
    actor: &Actor,
    photo: &Photo,
    (analysis, dets): (Analysis, Vec<Detection>),
    damage_model: bool,
    review_threshold: f32,
) -> Result<(), StoreError> {
    let (actor, photo) = (actor.clone(), photo.clone());
    store
        .write(move |tx| {
            repo::save_analysis(tx, &analysis)?;
            let at = now();
            let mut low_confidence = false;
            let mut disagreement: Option<String> = None;
            for d in &dets {
                if let Role::Damage(kind) = &d.role {
                    let (part, measured) = locate_and_measure(d, &dets);
                    if let (Some(part), Some(m)) = (&part, &measured) {
                        if let (_, Some(stated)) = stated_vs_measured(tx, &photo.case_id, part, m.length_cm)? {
                            disagreement = Some(format!(
                                "the customer said {stated} cm but the photo measures {} cm on the {part} (more than 15 % apart): a person decides",
                                m.length_cm
                            ));
                        }
                    }
                    let part = part.unwrap_or_else(|| "other".into());
                    repo::insert_vision_finding(tx, &photo.case_id, &photo.id, &part, kind, measured.map(|m| m.length_cm), d.confidence, &d.bbox, &at)?;
                    low_confidence |= d.confidence < review_threshold;
                }
            }
            let reason = if let Some(why) = &disagreement {
                Some(why.as_str())
            } else if analysis.status != "done" {
                Some("photo analysis failed; an advisor must assess the photo")
            } else if !damage_model {
                Some("needs advisor assessment: no damage model is installed, so no damage is inferred from photos")
            } else if low_confidence {
                Some("a photo finding is below the confidence threshold: manual review")
            } else {
                None
            };
            if let (Some(reason), Some(case)) = (reason, store::cases::get(tx, &photo.case_id)?) {
                // A disagreement is always put on the timeline; other reasons only when they flag it.
                if !case.needs_review || disagreement.is_some() {
                    let ev = Event { kind: "needs_assessment", from: None, to: None, reason: Some(reason) };
                    store::cases::note(tx, &case.id, &actor, &at, true, ev)?;
                }
            }
            Ok(())
        })
        .await
}
