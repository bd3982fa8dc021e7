//! What travels between a store and HQ, and nothing else: event batches (store → HQ), acks
//! (HQ → store), the store's retained status, and signed config bundles (HQ → store).
//! Pure encode/decode with size limits, so a hostile or corrupt message is an error, never a crash
//! or an unbounded allocation. Every payload carries `v` (the wire version) first.
//!
//! An error names what is wrong and where, never the data: a batch carries customers' phone
//! numbers and words, and these errors are logged (`redact_values`).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const WIRE_VERSION: u32 = 1;
/// Largest compressed event batch either side accepts.
pub const MAX_BATCH_COMPRESSED: usize = 8 * 1024 * 1024;
/// Largest decompressed event batch (guards against gzip bombs).
pub const MAX_BATCH_DECOMPRESSED: usize = 32 * 1024 * 1024;
/// Largest bundle (a detector model is ~6–90 MB; base64 adds a third).
pub const MAX_BUNDLE_COMPRESSED: usize = 192 * 1024 * 1024;
pub const MAX_BUNDLE_DECOMPRESSED: usize = 256 * 1024 * 1024;
/// Acks and status messages are tiny; anything bigger is not ours.
pub const MAX_SMALL: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("message too large: {size} bytes (limit {limit})")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid gzip: {0}")]
    Compression(String),
    #[error("message is not valid JSON for a {what}: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("unsupported wire version {0}")]
    Version(u32),
    #[error("batch is inconsistent: {0}")]
    Inconsistent(String),
    #[error("bundle signature does not verify with the configured HQ key")]
    BadSignature,
    #[error("bundle is malformed: {0}")]
    Bundle(String),
}

/// One outbox row as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: i64,
    pub event_id: String,
    pub record_type: String,
    pub record_id: String,
    pub version: i64,
    pub schema_version: i64,
    pub at: String,
    /// The record's JSON body, as committed at the store.
    pub body: String,
}

impl From<crate::store::sync::OutboxRow> for Record {
    fn from(r: crate::store::sync::OutboxRow) -> Record {
        Record {
            seq: r.seq,
            event_id: r.event_id,
            record_type: r.record_type,
            record_id: r.record_id,
            version: r.version,
            schema_version: r.schema_version,
            at: r.at,
            body: r.body,
        }
    }
}

/// A contiguous run of the outbox: every row with `after_seq < seq <= last_seq` that existed when it
/// was read, in order. `after_seq` lets HQ compute "highest contiguous sequence stored" without
/// assuming sequences have no holes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub v: u32,
    pub store_id: String,
    pub after_seq: i64,
    pub last_seq: i64,
    /// Newest sequence in the store's outbox when sent (HQ's backlog estimate is head − acked).
    pub head_seq: i64,
    pub sent_at: String,
    pub records: Vec<Record>,
}

impl Batch {
    /// Structural checks HQ relies on before touching its database.
    pub fn check(&self) -> Result<(), WireError> {
        if self.v != WIRE_VERSION {
            return Err(WireError::Version(self.v));
        }
        if !valid_store_id(&self.store_id) {
            return Err(WireError::Inconsistent("store_id is not a valid store id".into()));
        }
        if self.records.is_empty() || self.after_seq < 0 || self.last_seq <= self.after_seq {
            return Err(WireError::Inconsistent(format!("empty or reversed range ({}, {}]", self.after_seq, self.last_seq)));
        }
        let mut prev = self.after_seq;
        for r in &self.records {
            if r.seq <= prev || r.seq > self.last_seq {
                return Err(WireError::Inconsistent(format!("sequence {} out of order or outside the range", r.seq)));
            }
            if r.event_id.is_empty() || r.record_type.is_empty() || r.record_id.is_empty() {
                return Err(WireError::Inconsistent(format!("record {} lacks an id or type", r.seq)));
            }
            prev = r.seq;
        }
        if prev != self.last_seq {
            return Err(WireError::Inconsistent("last_seq is not the last record's sequence".into()));
        }
        Ok(())
    }
}

/// HQ → store: "I have stored everything up to and including `acked_seq`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub v: u32,
    pub store_id: String,
    pub acked_seq: i64,
}

/// HQ → store (`servicebay/v1/{store}/answers`, QoS 1, not retained): survey answers customers
/// gave on HQ's survey page, with HQ's per-store downlink sequence. HQ resends everything after the
/// store's acknowledged sequence until the ack covers it; the store applies in sequence order and
/// skips what it already applied, so each answer lands exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBatch {
    pub v: u32,
    pub store_id: String,
    pub answers: Vec<HqAnswer>,
}

/// One answer taken at HQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HqAnswer {
    /// HQ's downlink sequence for this store (1, 2, 3, … without gaps).
    pub seq: i64,
    /// HQ's id of the answer (the store keeps it as the answer's source id).
    pub answer_id: String,
    /// The store's follow-up task it answers.
    pub follow_up_id: String,
    pub answer: crate::domain::follow_up::Answer,
    pub answered_at: String,
}

/// Store → HQ (`servicebay/v1/{store}/answers/ack`, QoS 1, retained): "I have applied every answer
/// up to and including `applied_seq`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerAck {
    pub v: u32,
    pub store_id: String,
    pub applied_seq: i64,
}

/// Answer batches are small (a page of answers); a bigger one is not ours.
pub const MAX_ANSWER_BATCH: usize = 1024 * 1024;

pub fn encode_answers(b: &AnswerBatch) -> Vec<u8> {
    serde_json::to_vec(b).unwrap_or_default()
}

pub fn decode_answers(payload: &[u8]) -> Result<AnswerBatch, WireError> {
    if payload.len() > MAX_ANSWER_BATCH {
        return Err(WireError::TooLarge { size: payload.len(), limit: MAX_ANSWER_BATCH });
    }
    let b: AnswerBatch = json("answer batch", payload)?;
    if b.v != WIRE_VERSION {
        return Err(WireError::Version(b.v));
    }
    if b.answers.windows(2).any(|w| w[1].seq != w[0].seq + 1) || b.answers.first().is_some_and(|a| a.seq < 1) {
        return Err(WireError::Inconsistent("answer sequences must be consecutive from 1 up".into()));
    }
    Ok(b)
}

pub fn encode_answer_ack(a: &AnswerAck) -> Vec<u8> {
    serde_json::to_vec(a).unwrap_or_default()
}

pub fn decode_answer_ack(payload: &[u8]) -> Result<AnswerAck, WireError> {
    if payload.len() > MAX_SMALL {
        return Err(WireError::TooLarge { size: payload.len(), limit: MAX_SMALL });
    }
    let a: AnswerAck = json("answer ack", payload)?;
    if a.v != WIRE_VERSION {
        return Err(WireError::Version(a.v));
    }
    if a.applied_seq < 0 {
        return Err(WireError::Inconsistent("negative applied_seq".into()));
    }
    Ok(a)
}

/// The store's retained status (and, with `state: "offline"`, its last will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub store_id: String,
    pub state: String,
    pub at: String,
    #[serde(default)]
    pub acked_seq: i64,
    #[serde(default)]
    pub outbox_depth: i64,
    #[serde(default)]
    pub bundles: BTreeMap<String, u64>,
}

pub fn valid_store_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && id != "all"
}

// ---- compression ----------------------------------------------------------------------------

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

pub fn gunzip(bytes: &[u8], compressed_limit: usize, limit: usize) -> Result<Vec<u8>, WireError> {
    if bytes.len() > compressed_limit {
        return Err(WireError::TooLarge { size: bytes.len(), limit: compressed_limit });
    }
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(bytes).take((limit as u64).saturating_add(1));
    dec.read_to_end(&mut out).map_err(|e| WireError::Compression(e.to_string()))?;
    if out.len() > limit {
        return Err(WireError::TooLarge { size: out.len(), limit });
    }
    Ok(out)
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Json { what, reason: redact_values(&e.to_string()) })
}

/// serde_json's message without the values it quotes from the input: it says
/// `invalid type: string "13800000000", expected i64` or ``invalid type: integer `138…`, ...``, and
/// the input may be a customer's phone number or comment. Quoted strings become `"…"` and
/// backticked numbers `` `…` ``; field names (backticked words) stay, they say what is wrong.
pub fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A Debug-formatted string: skip to the closing quote, over escapes.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"…\"");
            }
            '`' => {
                let inner: String = chars.by_ref().take_while(|c| *c != '`').collect();
                let number = inner.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
                out.push('`');
                out.push_str(if number { "…" } else { &inner });
                out.push('`');
            }
            c => out.push(c),
        }
    }
    out
}

pub fn encode_batch(b: &Batch) -> Vec<u8> {
    gzip(&serde_json::to_vec(b).unwrap_or_default())
}

pub fn decode_batch(payload: &[u8]) -> Result<Batch, WireError> {
    let raw = gunzip(payload, MAX_BATCH_COMPRESSED, MAX_BATCH_DECOMPRESSED)?;
    let b: Batch = json("batch", &raw)?;
    b.check()?;
    Ok(b)
}

pub fn encode_ack(a: &Ack) -> Vec<u8> {
    serde_json::to_vec(a).unwrap_or_default()
}

pub fn decode_ack(payload: &[u8]) -> Result<Ack, WireError> {
    if payload.len() > MAX_SMALL {
        return Err(WireError::TooLarge { size: payload.len(), limit: MAX_SMALL });
    }
    let a: Ack = json("ack", payload)?;
    if a.v != WIRE_VERSION {
        return Err(WireError::Version(a.v));
    }
    if a.acked_seq < 0 {
        return Err(WireError::Inconsistent("negative acked_seq".into()));
    }
    Ok(a)
}

pub fn decode_status(payload: &[u8]) -> Result<Status, WireError> {
    if payload.len() > MAX_SMALL {
        return Err(WireError::TooLarge { size: payload.len(), limit: MAX_SMALL });
    }
    json("status", payload)
}

// ---- signed bundles -------------------------------------------------------------------------

/// What a bundle replaces. Each kind has its own version counter at the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    /// Parts with OEM/aftermarket prices and the labour operations (catalog parts.toml, operations.toml).
    PriceList,
    /// Labour rates and opening hours per store (catalog rates.toml).
    LabourRates,
    /// Fault → cause → solution (catalog knowledge.toml).
    KnowledgeBase,
    /// A detector model: NAME.safetensors + NAME.toml (the model card).
    DetectorModel,
    /// The intake lexicon's words (assets/intake/lexicon/*.toml: any of them; the others stay
    /// the built-in ones). Applied only if it keeps every development set at its floor.
    Lexicon,
}

impl BundleKind {
    pub const ALL: [BundleKind; 5] =
        [BundleKind::PriceList, BundleKind::LabourRates, BundleKind::KnowledgeBase, BundleKind::DetectorModel, BundleKind::Lexicon];

    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::PriceList => "price_list",
            BundleKind::LabourRates => "labour_rates",
            BundleKind::KnowledgeBase => "knowledge_base",
            BundleKind::DetectorModel => "detector_model",
            BundleKind::Lexicon => "lexicon",
        }
    }

    pub fn parse(s: &str) -> Option<BundleKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `name` may appear in a bundle of this kind (no paths, ever).
    pub fn allows_file(self, name: &str) -> bool {
        let plain = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        plain
            && match self {
                BundleKind::PriceList => name == "parts.toml" || name == "operations.toml",
                BundleKind::LabourRates => name == "rates.toml",
                BundleKind::KnowledgeBase => name == "knowledge.toml",
                BundleKind::DetectorModel => name.ends_with(".safetensors") || name.ends_with(".toml"),
                BundleKind::Lexicon => crate::intake::lexicon::FILES.contains(&name),
            }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The signed part of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub v: u32,
    pub kind: BundleKind,
    pub version: u64,
    /// A store id, or "all".
    pub target: String,
    pub created_at: String,
    pub files: Vec<FileEntry>,
}

/// As published: the manifest exactly as signed (a JSON string, so no canonicalisation is needed),
/// its ed25519 signature, and the files (base64), each checked against the manifest's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    v: u32,
    manifest: String,
    signature: String,
    files: BTreeMap<String, String>,
}

/// A bundle whose signature, hashes and names have been verified.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
    pub sha256: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sign and pack a bundle (HQ side, `servicebay hq-publish`).
pub fn seal_bundle(
    key: &ed25519_dalek::SigningKey,
    kind: BundleKind,
    version: u64,
    target: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, WireError> {
    for name in files.keys() {
        if !kind.allows_file(name) {
            return Err(WireError::Bundle(format!("file `{name}` does not belong in a {} bundle", kind.as_str())));
        }
    }
    let manifest = Manifest {
        v: WIRE_VERSION,
        kind,
        version,
        target: target.to_string(),
        created_at: crate::domain::now(),
        files: files.iter().map(|(n, b)| FileEntry { name: n.clone(), sha256: sha256_hex(b), bytes: b.len() as u64 }).collect(),
    };
    let manifest = serde_json::to_string(&manifest).map_err(|e| WireError::Bundle(e.to_string()))?;
    let signature = B64.encode(key.sign(manifest.as_bytes()).to_bytes());
    let env = Envelope { v: WIRE_VERSION, manifest, signature, files: files.iter().map(|(n, b)| (n.clone(), B64.encode(b))).collect() };
    Ok(gzip(&serde_json::to_vec(&env).map_err(|e| WireError::Bundle(e.to_string()))?))
}

/// Verify and unpack a bundle (store side). Checks, in order: size, gzip, envelope, signature,
/// manifest, file names, sizes and hashes. Target and version are the caller's policy.
pub fn open_bundle(payload: &[u8], key: &ed25519_dalek::VerifyingKey) -> Result<Bundle, WireError> {
    let raw = gunzip(payload, MAX_BUNDLE_COMPRESSED, MAX_BUNDLE_DECOMPRESSED)?;
    let env: Envelope = json("bundle", &raw)?;
    if env.v != WIRE_VERSION {
        return Err(WireError::Version(env.v));
    }
    let sig_bytes = B64.decode(env.signature.as_bytes()).map_err(|_| WireError::BadSignature)?;
    let sig = ed25519_dalek::Signature::from_slice(&sig_bytes).map_err(|_| WireError::BadSignature)?;
    key.verify(env.manifest.as_bytes(), &sig).map_err(|_| WireError::BadSignature)?;
    let manifest: Manifest = json("bundle manifest", env.manifest.as_bytes())?;
    if manifest.v != WIRE_VERSION {
        return Err(WireError::Version(manifest.v));
    }
    if manifest.files.is_empty() || manifest.files.len() != env.files.len() {
        return Err(WireError::Bundle("the files do not match the manifest".into()));
    }
    let mut files = BTreeMap::new();
    for entry in &manifest.files {
        if !manifest.kind.allows_file(&entry.name) {
            return Err(WireError::Bundle(format!("file `{}` does not belong in a {} bundle", entry.name, manifest.kind.as_str())));
        }
        let data = env.files.get(&entry.name).ok_or_else(|| WireError::Bundle(format!("file `{}` is missing", entry.name)))?;
        let bytes = B64.decode(data.as_bytes()).map_err(|_| WireError::Bundle(format!("file `{}` is not base64", entry.name)))?;
        if bytes.len() as u64 != entry.bytes || sha256_hex(&bytes) != entry.sha256 {
            return Err(WireError::Bundle(format!("file `{}` does not match its size or SHA-256", entry.name)));
        }
        files.insert(entry.name.clone(), bytes);
    }
    Ok(Bundle { manifest, files, sha256: sha256_hex(payload) })
}

/// Keys are exchanged as base64 of their 32 raw bytes.
pub fn parse_verifying_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes = B64.decode(text.trim().as_bytes()).map_err(|_| "not base64".to_string())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "an ed25519 public key is 32 bytes".to_string())?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|e| e.to_string())
}

pub fn parse_signing_key(text: &str) -> Result<ed25519_dalek::SigningKey, String> {
    let bytes = B64.decode(text.trim().as_bytes()).map_err(|_| "not base64".to_string())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "an ed25519 private key is 32 bytes".to_string())?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&arr))
}

pub fn encode_key(bytes: &[u8; 32]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_problem_not_the_values() {
        let phone = "13800000000";
        let bad = [
            format!(r#"{{"v":1,"store_id":"s1","after_seq":"{phone}"}}"#),
            format!(
                r#"{{"v":1,"store_id":"s1","after_seq":0,"last_seq":1,"head_seq":1,"sent_at":"x","records":[{{"seq":1,"event_id":"e","record_type":"t","record_id":"r","version":1,"schema_version":1,"at":"x","body":{phone}}}]}}"#
            ),
            format!(
                r#"{{"v":1,"store_id":"s1","after_seq":0,"last_seq":1,"head_seq":1,"sent_at":"x","records":[{{"seq":1,"event_id":"e","record_type":"t","record_id":"r","version":1,"schema_version":1,"at":"x","body":"ok","comment":"门还是响 {phone}"}}]}}"#
            ),
            format!(r#"{{"v":1,"store_id":"s1","after_seq":0.5e{phone}}}"#),
        ];
        for b in bad {
            let e = decode_batch(&gzip(b.as_bytes())).unwrap_err().to_string();
            assert!(e.contains("not valid JSON for a batch") && e.contains("line 1"), "{e}");
            assert!(!e.contains(phone) && !e.contains("门还是响"), "{e}");
        }
        // What is wrong stays readable.
        assert_eq!(redact_values(r#"invalid type: string "a \"b\" c", expected i64"#), r#"invalid type: string "…", expected i64"#);
        assert_eq!(redact_values("unknown field `comment`, expected `seq`"), "unknown field `comment`, expected `seq`");
        assert_eq!(redact_values("invalid type: integer `13800000000`, expected a string"), "invalid type: integer `…`, expected a string");
    }

    fn rec(seq: i64) -> Record {
        Record {
            seq,
            event_id: format!("e{seq}"),
            record_type: "case".into(),
            record_id: "c1".into(),
            version: seq,
            schema_version: 1,
            at: "2026-11-24T00:00:00Z".into(),
            body: "{}".into(),
        }
    }

    fn batch(after: i64, seqs: &[i64]) -> Batch {
        Batch {
            v: 1,
            store_id: "s1".into(),
            after_seq: after,
            last_seq: *seqs.last().unwrap_or(&after),
            head_seq: 100,
            sent_at: String::new(),
            records: seqs.iter().map(|s| rec(*s)).collect(),
        }
    }

    #[test]
    fn batch_round_trips_and_checks_ranges() {
        let b = batch(3, &[4, 5, 9]);
        assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
        assert!(batch(3, &[]).check().is_err());
        assert!(batch(5, &[4, 6]).check().is_err());
        assert!(batch(1, &[3, 2]).check().is_err());
        let mut lie = batch(1, &[2, 3]);
        lie.last_seq = 7;
        assert!(lie.check().is_err());
        let mut bad_store = batch(1, &[2]);
        bad_store.store_id = "all".into();
        assert!(bad_store.check().is_err());
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        assert!(matches!(decode_batch(b"not gzip"), Err(WireError::Compression(_))));
        assert!(matches!(decode_batch(&gzip(b"{\"v\":1")), Err(WireError::Json { .. })));
        let bomb = gzip(&vec![b' '; MAX_BATCH_DECOMPRESSED + 10]);
        assert!(bomb.len() < 1024 * 1024);
        assert!(matches!(decode_batch(&bomb), Err(WireError::TooLarge { .. })));
        assert!(decode_ack(b"{\"v\":1,\"store_id\":\"s\",\"acked_seq\":-1}").is_err());
        assert!(decode_ack(&vec![b'{'; MAX_SMALL + 1]).is_err());
        assert_eq!(decode_ack(&encode_ack(&Ack { v: 1, store_id: "s".into(), acked_seq: 7 })).unwrap().acked_seq, 7);
    }

    #[test]
    fn bundles_verify_and_reject_tampering() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let files: BTreeMap<String, Vec<u8>> = [("rates.toml".to_string(), b"x = 1".to_vec())].into();
        let sealed = seal_bundle(&key, BundleKind::LabourRates, 3, "all", &files).unwrap();
        let b = open_bundle(&sealed, &key.verifying_key()).unwrap();
        assert_eq!((b.manifest.kind, b.manifest.version, b.manifest.target.as_str()), (BundleKind::LabourRates, 3, "all"));
        assert_eq!(b.files, files);
        assert_eq!(open_bundle(&sealed, &other.verifying_key()).unwrap_err(), WireError::BadSignature);

        // A file swapped after signing fails its hash.
        let raw = gunzip(&sealed, usize::MAX, usize::MAX).unwrap();
        let mut env: Envelope = serde_json::from_slice(&raw).unwrap();
        env.files.insert("rates.toml".into(), B64.encode(b"x = 2"));
        let tampered = gzip(&serde_json::to_vec(&env).unwrap());
        assert!(matches!(open_bundle(&tampered, &key.verifying_key()), Err(WireError::Bundle(_))));

        // Paths and foreign files are refused at sealing and would be at opening.
        let evil: BTreeMap<String, Vec<u8>> = [("../rates.toml".to_string(), vec![1])].into();
        assert!(seal_bundle(&key, BundleKind::LabourRates, 4, "all", &evil).is_err());
        assert!(!BundleKind::DetectorModel.allows_file("x/../y.toml"));
        assert!(!BundleKind::PriceList.allows_file("rates.toml"));
    }

    #[test]
    fn keys_round_trip() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let text = encode_key(key.verifying_key().as_bytes());
        assert_eq!(parse_verifying_key(&text).unwrap(), key.verifying_key());
        assert_eq!(parse_signing_key(&encode_key(&key.to_bytes())).unwrap().to_bytes(), key.to_bytes());
        assert!(parse_verifying_key("abc").is_err());
    }
}
