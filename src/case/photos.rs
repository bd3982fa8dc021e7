//! Photo analysis in the case flow: a worker thread that owns the detector takes photos that have
//! no analysis yet (the `photo_analysis` table is its persistent queue, so a restart loses nothing
//! and the work is bounded by what was uploaded), runs the quality gate and the detector, and
//! stores quality, shot guess and detections. Damage classes of a dealer's model become findings;
//! below the review threshold they go to manual review. With no damage model the case is marked
//! "needs advisor assessment" — never a made-up finding. Inference never runs on the async runtime.
//!
//! The photos stage: a photo finding of a problem the customer already named joins that finding
//! (one finding, two sources); once the requested photos pass the quality gate (or an advisor
//! waives them) the case moves to `assessed`. The blurred render — the only version that may leave
//! the store — is made only from an analysis by a detector with a face or person class; otherwise
//! it is refused (`privacy_detections`), never served unblurred.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::domain::{now, Actor, Photo};
use crate::files::PhotoFiles;
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
    let privacy_capable = detector.is_some_and(|d| d.card().roles.iter().any(|r| matches!(r, Role::PiiFace | Role::PiiPerson)));
    let base = Analysis {
        privacy_capable,
        photo_id: photo.id.clone(),
        status: "failed".into(),
        model: detector.map(|d| d.card().name.clone()),
        quality: None,
        detections: None,
        shot: None,
        error: None,
        analysed_at: now(),
    };
    let img = match files.open_image(&photo.case_id, &photo.sha256) {
        Ok(i) => i,
        Err(e) => return (Analysis { error: Some(e), ..base }, Vec::new()),
    };
    let dets = match detector.map(|d| d.detect(&img)) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return (Analysis { error: Some(e.to_string()), ..base }, Vec::new()),
        None => None,
    };
    // Framing (is the vehicle in the picture, big enough) is judged only by a model that can see a
    // vehicle: a dealer's damage model without that class says nothing about it.
    let sees_vehicles = detector.is_some_and(|d| d.card().roles.contains(&Role::Vehicle));
    let report = assess(&img, dets.as_deref().filter(|_| sees_vehicles), &cfg.quality);
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
            Role::Part(p) if crate::domain::vocab::Part::from_id(p).is_some() => Some((p.as_str(), d.bbox)),
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
            // A workshop shot (baseline, after-repair, part label) documents the car; its damage
            // is compared by the QC stage and never becomes an intake finding.
            if store::workshop::is_shot(tx, &photo.id)? {
                return Ok(());
            }
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
                    merge_vision_finding(tx, &photo, &part, kind, measured.map(|m| m.length_cm), d, &at)?;
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
                    let ev = Event::note("needs_assessment", reason);
                    store::cases::note(tx, &case.id, &actor, &at, true, ev)?;
                }
            }
            match super::assess_if_ready(tx, &photo.case_id, &actor, "the requested photos passed the quality gate") {
                Ok(_) => Ok(()),
                Err(super::CaseError::Store(e)) => Err(e),
                // A guard that does not hold is not a failure of the analysis.
                Err(e) => {
                    tracing::warn!(error = %e, case = %photo.case_id, "could not move the case after a photo analysis");
                    Ok(())
                }
            }
        })
        .await
}

/// A damage the detector found: one finding with the customer's (or advisor's) finding of the same
/// problem when there is one (the photo adds its source, box, confidence and measurement), else a
/// new photo finding.
fn merge_vision_finding(
    tx: &store::Tx,
    photo: &Photo,
    part: &str,
    damage: &str,
    measured_cm: Option<f64>,
    d: &Detection,
    at: &str,
) -> Result<(), StoreError> {
    use crate::store::findings::{self as findings, FindingRecord};
    let bbox = serde_json::json!(d.bbox);
    let same = findings::of_case(tx, &photo.case_id)?
        .into_iter()
        .find(|f| f.review_status != "rejected" && f.photo_id.is_none() && findings::same_problem(f, part, None, damage));
    if let Some(mut f) = same {
        if !f.has_source("vision") {
            f.sources.push("vision".into());
        }
        f.photo_id = Some(photo.id.clone());
        f.bbox = Some(bbox);
        f.confidence = Some(f64::from(d.confidence));
        f.measured_cm = measured_cm;
        f.updated_at = at.to_string();
        return findings::save(tx, &f);
    }
    findings::insert(
        tx,
        &FindingRecord {
            id: crate::domain::new_id(),
            case_id: photo.case_id.clone(),
            source: "vision".into(),
            sources: vec!["vision".into()],
            part: part.into(),
            position: None,
            damage_type: damage.into(),
            length_cm: None,
            measured_cm,
            primer_visible: None,
            occurs_when: None,
            facts: Default::default(),
            confidence: Some(f64::from(d.confidence)),
            review_status: "pending".into(),
            photo_id: Some(photo.id.clone()),
            bbox: Some(bbox),
            note: None,
            updated_at: at.to_string(),
        },
    )
}

/// The boxes to blur a photo with, or the reason there are none to trust: the analysis is not done,
/// or no detector with a face or person class made it, or it cannot be read (each a 409 with its
/// reason: the photo's state, not a fault of the appliance). Never "no boxes", which would pass the
/// photo through unblurred.
pub fn privacy_detections(analysis: Result<Option<Analysis>, StoreError>) -> Result<Vec<Detection>, super::CaseError> {
    use super::CaseError;
    let a = match analysis {
        Ok(a) => a,
        Err(StoreError::Corrupt(_)) => {
            return Err(CaseError::state(
                "privacy_unavailable",
                "the photo's analysis cannot be read, so it cannot be blurred; analyse it again",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let Some(a) = a.filter(|a| a.status == "done") else {
        return Err(CaseError::state("analysis_pending", "the photo has not been analysed yet; try again shortly"));
    };
    if !a.privacy_capable {
        return Err(CaseError::state(
            "privacy_unavailable",
            "no detector that finds faces or people analysed this photo (vision off, or a model without pii roles): the blurred version cannot be made",
        ));
    }
    a.detections.and_then(|d| serde_json::from_value::<Vec<Detection>>(d).ok()).ok_or_else(|| {
        CaseError::state("privacy_unavailable", "the photo's detections cannot be read, so it cannot be blurred; analyse it again")
    })
}

/// An advisor decides the case needs no (more) photos, with a reason; the case moves on to
/// `assessed` when its findings are in.
pub async fn waive_photos(
    store: &Store,
    actor: &Actor,
    case_id: String,
    reason: String,
) -> Result<crate::domain::case::Case, super::CaseError> {
    use super::CaseError;
    let reason = crate::domain::validate::text("reason", &reason, 500)?;
    let actor = actor.clone();
    store
        .write(move |tx| -> Result<_, CaseError> {
            let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
            if !matches!(case.status, crate::domain::CaseStatus::Reported | crate::domain::CaseStatus::Intake) {
                return Err(CaseError::state("not_in_intake", format!("case is {}; photos are waived during intake", case.status)));
            }
            let at = now();
            repo::save_waiver(tx, &case_id, &reason, &actor.username, &at)?;
            let why = format!("photos waived: {reason}");
            store::cases::note(tx, &case_id, &actor, &at, false, Event::note("photos_waived", &why))?;
            store::audit::record(tx, &actor, "case.photos_waive", "case", Some(&case_id), "ok")?;
            super::assess_if_ready(tx, &case_id, &actor, "photos waived by an advisor")?;
            store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))
        })
        .await
}
