//! The repair QC report (维修质检报告) as a PDF, rendered on the box without a browser.
//!
//! Owns: the report's input types ([`QcReportDoc`] and its rows), the fixed labels
//! ([`Labels`], data in `assets/report/qc_report.toml`), the report font ([`ReportFont`]) and
//! [`render`], which lays the report out on A4 pages and writes it with `krilla`.
//!
//! Invariants:
//! - **Fail closed on the font.** A report is never written without the CJK font: a missing,
//!   unreadable or unsuitable font file is a [`PdfError::Font`] naming the path, at load time
//!   (a test render runs there) and again if embedding fails while writing.
//! - **Text is text.** Every string is drawn as glyphs of the embedded, subset font with a
//!   ToUnicode map, so the PDF can be searched and copied; nothing is drawn as outlines.
//! - **Widths are measured with the font's own advances** (`cmap` + `hmtx`, read here because
//!   krilla keeps its metrics private). CJK breaks at any character, Latin at spaces, and a
//!   token wider than a line breaks anywhere, so no text runs past its box.
//! - **Every label the renderer prints is checked at load.** [`Labels`] is generated from one
//!   key list, so the renderer can only name keys the loader has verified are present.
//! - **Layout is two passes:** the sections are laid out into a display list of pages first,
//!   then drawn, so the footer knows the page count ("第 n 页 / 共 m 页"). Tables repeat their
//!   header after a page break and split a row that is taller than a page.
//! - The output is deterministic for the same input (no clock, no random ids), so a hash of
//!   the PDF identifies the report.

mod font;
pub mod kpi_report;
mod labels;
mod layout;
mod sections;
#[cfg(test)]
mod tests;

pub use font::ReportFont;
pub use labels::{Label, Labels};

use layout::{emit, Composer};
use sections::{alerts, certificate, checkpoints, findings, footers, header, labour, parts, signoff, survey};

// ------------------------------------------------------------------------------------------
// Input
// ------------------------------------------------------------------------------------------

/// Everything printed on one QC report. All text is already localised by the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QcReportDoc {
    pub store_name: String,
    /// e.g. "QC-20261206-0001"
    pub report_no: String,
    pub case_id: String,
    /// "京A·12345 / LSVAB4BR7JN123456 / 大众 帕萨特 / 45,210 km" (plate already masked for the
    /// customer copy)
    pub vehicle: String,
    /// The customer's copy: photos given are already blurred.
    pub customer_copy: bool,
    pub opened_at: String,
    pub inspected_at: String,
    pub passed: bool,
    pub checkpoints: Vec<CheckpointRow>,
    pub findings: Vec<FindingRow>,
    pub parts: Vec<PartRow>,
    pub labour: Vec<LabourRow>,
    pub alerts: Vec<AlertRow>,
    pub inspector: String,
    pub inspector_note: Option<String>,
    pub certificate: Certificate,
    pub warranty: Vec<WarrantyRow>,
    /// The follow-up survey's QR code (HQ's page), printed under the certificate when configured.
    #[serde(skip)]
    pub survey: Option<SurveyQr>,
}

/// HQ's survey page for this car's follow-up, as a QR code (PNG) and its address.
#[derive(Debug, Clone)]
pub struct SurveyQr {
    pub url: String,
    pub png: Vec<u8>,
}

/// One checkpoint: a before and an after photo (JPEG bytes) of the same view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRow {
    pub name: String,
    #[serde(skip)]
    pub before_jpeg: Option<Vec<u8>>,
    #[serde(skip)]
    pub after_jpeg: Option<Vec<u8>>,
    /// e.g. "视角一致 0.62" or "未拍摄 not shot"
    pub note: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingRow {
    pub part: String,
    pub damage: String,
    /// 已修复 / 仍存在 / 新增
    pub outcome: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartRow {
    pub part_no: String,
    pub name: String,
    /// 原厂/同质/修复
    pub origin: String,
    pub code: String,
    pub serial: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabourRow {
    pub operation: String,
    pub standard_h: f64,
    pub clocked_h: f64,
    pub flag: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub kind: String,
    pub detail: String,
    pub settlement: String,
}

/// The fields of the 机动车维修竣工出厂合格证.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Certificate {
    pub certificate_no: String,
    /// e.g. 二级维护 / 小修 / 总成修理
    pub repair_class: String,
    pub completed_at: String,
    pub mileage_km: Option<i64>,
    pub quality_inspector: String,
    pub store_licence: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WarrantyRow {
    pub repair_class: String,
    /// e.g. "20 天或 2,000 公里"
    pub terms: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the report font {path} cannot be used: {reason}; install fonts-noto-cjk or set [report] font")]
    Font { path: String, reason: String },
    #[error("report labels {0}")]
    Labels(String),
    #[error("cannot render the report: {0}")]
    Render(String),
}

// ------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------

/// Renders the report to PDF bytes. The font is embedded as a subset; photos are embedded as
/// JPEG (downscaled first when large). Pure: no I/O, no clock.
pub fn render(doc: &QcReportDoc, font: &ReportFont, labels: &Labels) -> Result<Vec<u8>, PdfError> {
    let copy = if doc.customer_copy { &labels.copy_customer } else { &labels.copy_store };
    let running = format!("{}  ·  {}  ·  {}", labels.title.both(), doc.report_no, copy.both());
    let mut c = Composer::new(font, labels, running);

    header(&mut c, doc, copy);
    checkpoints(&mut c, doc);
    findings(&mut c, doc);
    parts(&mut c, doc);
    labour(&mut c, doc);
    alerts(&mut c, doc);
    signoff(&mut c, doc);
    certificate(&mut c, doc);
    survey(&mut c, doc);

    let mut pages = std::mem::take(&mut c.pages);
    footers(&mut pages, font, labels, &doc.report_no);
    let title = format!("{} {}", labels.title.both(), doc.report_no);
    emit(pages, font, title)
}
