//! The route × role matrix: the one place that says who may call what. Every route of the API is
//! listed here with its method, its OpenAPI path and its access rule; the filters in `api::routes`
//! ask `access(id)` and the tests walk `ROUTES` for the 401/403 matrix and the OpenAPI check.

use crate::domain::Role::{self, *};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    Healthz,
    OpenApi,
    Metrics,
    Login,
    Logout,
    Me,
    ChangePassword,
    CustomersCreate,
    CustomersList,
    CustomersGet,
    VehiclesCreate,
    VehiclesGet,
    CasesCreate,
    CasesList,
    CasesGet,
    CasesTransition,
    CasesEscalate,
    CasesHandBack,
    CasesAssign,
    CasesMessagesPost,
    CasesMessagesList,
    CasesEstimateCreate,
    CasesEstimateGet,
    CasesEstimateExplain,
    CasesFindings,
    CasesFindingsAdd,
    CasesPhotosWaive,
    CasesApprove,
    SlotsList,
    CasesAppointmentGet,
    CasesAppointmentBook,
    CasesAppointmentCancel,
    FindingsReview,
    FindingsMeasure,
    PhotosUpload,
    PhotosGet,
    PhotosAnalysis,
    PhotosAnnotated,
    PhotosBlurred,
    UsersList,
    UsersCreate,
    UsersDisable,
    UsersEnable,
    UsersResetPassword,
    AuditList,
    SyncStatus,
    LlmStatus,
    PrivacyFind,
    PrivacyExport,
    PrivacyErase,
    CasesLegalHold,
    ProtectionStatus,
    WorkshopBoard,
    WorkshopFlags,
    WorkshopFlagSettle,
    CasesWorkshop,
    CasesWorkshopPhotos,
    CasesBaselineMark,
    CasesBaselineSign,
    CasesWorkOrderStart,
    CasesWorkOrderFinish,
    WorkOrderLineClock,
    ClockEntryCorrect,
    CasesPartsScan,
    CasesQcCompare,
    CasesQcReport,
    CasesQcReportPdf,
    FollowUpsList,
    FollowUpConsentText,
    FollowUpAlerts,
    FollowUpAlertRespond,
    FollowUpAlertResolve,
    CasesFollowUp,
    CasesFollowUpAnswer,
    CasesFollowUpAttempt,
    CasesConsent,
    CustomersConsentRevoke,
    KpiFigures,
    KpiReportPdf,
    KpiSnapshot,
    ImportsMappings,
    ImportsRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No session needed (and no data returned beyond the route's purpose).
    Public,
    /// Any logged-in user, even one who must still change a one-time password.
    AnyUser,
    /// Logged-in users with one of these roles.
    Roles(&'static [Role]),
    /// Loopback clients, or a logged-in user with one of these roles.
    LoopbackOr(&'static [Role]),
}

pub struct RouteSpec {
    pub id: RouteId,
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const STAFF: &[Role] = &[Advisor, Technician, QcInspector, CustomerService, Manager];
const EVERYONE: &[Role] = &[Advisor, Technician, QcInspector, CustomerService, Manager, HqAuditor];
const FRONT_DESK: &[Role] = &[Advisor, CustomerService, Manager];
const ADVISORS: &[Role] = &[Advisor, Manager];
const PHOTO_TAKERS: &[Role] = &[Advisor, Technician, QcInspector, Manager];
const MANAGERS: &[Role] = &[Manager];
const AUDITORS: &[Role] = &[Manager, HqAuditor];

const fn r(id: RouteId, method: &'static str, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec { id, method, path, access }
}

use Access::*;
use RouteId::*;

pub const ROUTES: &[RouteSpec] = &[
    r(Healthz, "GET", "/healthz", Public),
    r(OpenApi, "GET", "/api/v1/openapi.json", Public),
    r(Metrics, "GET", "/metrics", LoopbackOr(MANAGERS)),
    r(Login, "POST", "/api/v1/auth/login", Public),
    r(Logout, "POST", "/api/v1/auth/logout", AnyUser),
    r(Me, "GET", "/api/v1/auth/me", AnyUser),
    r(ChangePassword, "POST", "/api/v1/auth/password", AnyUser),
    // Customer records are personal data: front desk only; technicians work from the case.
    r(CustomersCreate, "POST", "/api/v1/customers", Roles(FRONT_DESK)),
    r(CustomersList, "GET", "/api/v1/customers", Roles(FRONT_DESK)),
    r(CustomersGet, "GET", "/api/v1/customers/{id}", Roles(FRONT_DESK)),
    r(VehiclesCreate, "POST", "/api/v1/vehicles", Roles(ADVISORS)),
    r(VehiclesGet, "GET", "/api/v1/vehicles/{id}", Roles(STAFF)),
    r(CasesCreate, "POST", "/api/v1/cases", Roles(FRONT_DESK)),
    r(CasesList, "GET", "/api/v1/cases", Roles(EVERYONE)),
    r(CasesGet, "GET", "/api/v1/cases/{id}", Roles(EVERYONE)),
    // Which role may cause which move is decided by the case rules (domain::case::may_move).
    r(CasesTransition, "POST", "/api/v1/cases/{id}/transition", Roles(STAFF)),
    r(CasesEscalate, "POST", "/api/v1/cases/{id}/escalate", Roles(STAFF)),
    r(CasesHandBack, "POST", "/api/v1/cases/{id}/hand-back", Roles(ADVISORS)),
    r(CasesAssign, "POST", "/api/v1/cases/{id}/assign", Roles(ADVISORS)),
    // The guided-intake conversation: the customer's words are personal data (front desk only).
    r(CasesMessagesPost, "POST", "/api/v1/cases/{id}/messages", Roles(FRONT_DESK)),
    r(CasesMessagesList, "GET", "/api/v1/cases/{id}/messages", Roles(FRONT_DESK)),
    // Prices come from the catalogue; advisors issue estimates, everyone working the case reads them.
    r(CasesEstimateCreate, "POST", "/api/v1/cases/{id}/estimate", Roles(ADVISORS)),
    r(CasesEstimateGet, "GET", "/api/v1/cases/{id}/estimate", Roles(EVERYONE)),
    // The model's wording of the latest estimate (seconds on a CPU box; the price never waits).
    r(CasesEstimateExplain, "POST", "/api/v1/cases/{id}/estimate/explanation", Roles(ADVISORS)),
    r(CasesFindings, "GET", "/api/v1/cases/{id}/findings", Roles(EVERYONE)),
    // The one finding list: an advisor adds what the customer's words and the photos missed.
    r(CasesFindingsAdd, "POST", "/api/v1/cases/{id}/findings", Roles(ADVISORS)),
    r(CasesPhotosWaive, "POST", "/api/v1/cases/{id}/photos/waive", Roles(ADVISORS)),
    // The customer's yes and the booking: the front desk (customer service takes phone approvals).
    r(CasesApprove, "POST", "/api/v1/cases/{id}/approval", Roles(FRONT_DESK)),
    r(SlotsList, "GET", "/api/v1/slots", Roles(FRONT_DESK)),
    r(CasesAppointmentGet, "GET", "/api/v1/cases/{id}/appointment", Roles(EVERYONE)),
    r(CasesAppointmentBook, "POST", "/api/v1/cases/{id}/appointment", Roles(FRONT_DESK)),
    r(CasesAppointmentCancel, "DELETE", "/api/v1/cases/{id}/appointment", Roles(FRONT_DESK)),
    // Every AI finding can be taken over by a person in one step (advisors; QC for photo findings).
    r(FindingsReview, "POST", "/api/v1/findings/{id}/review", Roles(&[Advisor, QcInspector, Manager])),
    r(FindingsMeasure, "POST", "/api/v1/findings/{id}/measure", Roles(&[Advisor, QcInspector, Manager])),
    r(PhotosUpload, "POST", "/api/v1/cases/{id}/photos", Roles(PHOTO_TAKERS)),
    // Unblurred originals stay with staff who work the car; HQ auditors get blurred exports later.
    r(PhotosGet, "GET", "/api/v1/photos/{id}", Roles(STAFF)),
    r(PhotosAnalysis, "GET", "/api/v1/photos/{id}/analysis", Roles(EVERYONE)),
    r(PhotosAnnotated, "GET", "/api/v1/photos/{id}/annotated", Roles(STAFF)),
    // Faces, plates and heads pixelated: the version that may leave the bay (HQ auditors too).
    r(PhotosBlurred, "GET", "/api/v1/photos/{id}/blurred", Roles(EVERYONE)),
    r(UsersList, "GET", "/api/v1/users", Roles(MANAGERS)),
    r(UsersCreate, "POST", "/api/v1/users", Roles(MANAGERS)),
    r(UsersDisable, "POST", "/api/v1/users/{id}/disable", Roles(MANAGERS)),
    r(UsersEnable, "POST", "/api/v1/users/{id}/enable", Roles(MANAGERS)),
    r(UsersResetPassword, "POST", "/api/v1/users/{id}/reset-password", Roles(MANAGERS)),
    r(AuditList, "GET", "/api/v1/audit", Roles(AUDITORS)),
    // Whether HQ gets the data: outbox depth, link, applied bundles (no personal data).
    r(SyncStatus, "GET", "/api/v1/sync/status", Roles(AUDITORS)),
    // Whether the language model answers, its worker and restarts (no customer data).
    r(LlmStatus, "GET", "/api/v1/llm/status", Roles(MANAGERS)),
    // Customers' requests (PIPL): only a manager exports or erases someone's data; both audited.
    r(PrivacyFind, "GET", "/api/v1/privacy/customers", Roles(MANAGERS)),
    r(PrivacyExport, "GET", "/api/v1/privacy/customers/{id}/export", Roles(MANAGERS)),
    r(PrivacyErase, "POST", "/api/v1/privacy/customers/{id}/erase", Roles(MANAGERS)),
    r(CasesLegalHold, "POST", "/api/v1/cases/{id}/legal-hold", Roles(MANAGERS)),
    // What protects the data: key mode, backups, retention (no personal data).
    r(ProtectionStatus, "GET", "/api/v1/protection/status", Roles(MANAGERS)),
    // The workshop (seed scenario 2). The manager's bay board and anomaly queue; QC inspectors read
    // their alert queue too. Who may settle which flag is the service's rule (managers settle the
    // manager queue and escalated alerts).
    r(WorkshopBoard, "GET", "/api/v1/workshop/board", Roles(&[Technician, QcInspector, Manager])),
    r(WorkshopFlags, "GET", "/api/v1/workshop/flags", Roles(&[QcInspector, Manager])),
    r(WorkshopFlagSettle, "POST", "/api/v1/workshop/flags/{id}", Roles(&[QcInspector, Manager])),
    r(CasesWorkshop, "GET", "/api/v1/cases/{id}/workshop", Roles(&[Advisor, Technician, QcInspector, Manager])),
    // Before-shots at drop-off (advisor or technician), after-shots by the technician or inspector.
    r(CasesWorkshopPhotos, "POST", "/api/v1/cases/{id}/workshop/photos", Roles(PHOTO_TAKERS)),
    r(CasesBaselineMark, "POST", "/api/v1/cases/{id}/baseline/marks", Roles(ADVISORS)),
    // The customer signs the baseline at drop-off, recorded by the advisor.
    r(CasesBaselineSign, "POST", "/api/v1/cases/{id}/baseline/sign", Roles(ADVISORS)),
    r(CasesWorkOrderStart, "POST", "/api/v1/cases/{id}/work-order", Roles(&[Technician, Manager])),
    r(CasesWorkOrderFinish, "POST", "/api/v1/cases/{id}/work-order/finish", Roles(&[Technician, Manager])),
    // The clock is the technician's own; a manager corrects entries (audited).
    r(WorkOrderLineClock, "POST", "/api/v1/work-order-lines/{id}/clock", Roles(&[Technician])),
    r(ClockEntryCorrect, "POST", "/api/v1/clock-entries/{id}/correct", Roles(MANAGERS)),
    r(CasesPartsScan, "POST", "/api/v1/cases/{id}/parts", Roles(&[Technician, Manager])),
    r(CasesQcCompare, "POST", "/api/v1/cases/{id}/qc/compare", Roles(&[QcInspector, Manager])),
    r(CasesQcReport, "POST", "/api/v1/cases/{id}/qc/report", Roles(&[QcInspector, Manager])),
    r(CasesQcReportPdf, "GET", "/api/v1/cases/{id}/qc/report.pdf", Roles(&[Advisor, QcInspector, Manager])),
    // Follow-up (seed scenario 3): customer service calls and answers alerts; managers see all;
    // advisors record consent when they hand the car over and can see the queue.
    r(FollowUpsList, "GET", "/api/v1/follow-ups", Roles(&[CustomerService, Advisor, Manager])),
    r(FollowUpConsentText, "GET", "/api/v1/follow-up/consent-text", Roles(&[CustomerService, Advisor, QcInspector, Manager])),
    r(FollowUpAlerts, "GET", "/api/v1/follow-up/alerts", Roles(&[CustomerService, Manager])),
    r(FollowUpAlertRespond, "POST", "/api/v1/follow-up/alerts/{id}/respond", Roles(&[CustomerService, Manager])),
    r(FollowUpAlertResolve, "POST", "/api/v1/follow-up/alerts/{id}/resolve", Roles(&[CustomerService, Manager])),
    r(CasesFollowUp, "GET", "/api/v1/cases/{id}/follow-up", Roles(&[CustomerService, Advisor, Manager])),
    r(CasesFollowUpAnswer, "POST", "/api/v1/cases/{id}/follow-up/answer", Roles(&[CustomerService, Manager])),
    r(CasesFollowUpAttempt, "POST", "/api/v1/cases/{id}/follow-up/attempt", Roles(&[CustomerService, Manager])),
    r(CasesConsent, "POST", "/api/v1/cases/{id}/consent", Roles(&[CustomerService, Advisor, QcInspector, Manager])),
    r(CustomersConsentRevoke, "POST", "/api/v1/customers/{id}/consent/revoke", Roles(&[CustomerService, Advisor, Manager])),
    // The store's KPIs (门店指标): the manager's figures, the monthly PDF, a day's snapshot for HQ.
    r(KpiFigures, "GET", "/api/v1/kpi", Roles(MANAGERS)),
    r(KpiReportPdf, "GET", "/api/v1/kpi/report.pdf", Roles(MANAGERS)),
    r(KpiSnapshot, "POST", "/api/v1/kpi/snapshots", Roles(MANAGERS)),
    r(ImportsMappings, "GET", "/api/v1/imports/mappings", Roles(MANAGERS)),
    r(ImportsRun, "POST", "/api/v1/imports/{kind}", Roles(MANAGERS)),
];

pub fn spec(id: RouteId) -> &'static RouteSpec {
    // ROUTES lists every RouteId; the unit test below keeps it that way.
    ROUTES.iter().find(|s| s.id == id).unwrap_or(&ROUTES[0])
}

pub fn access(id: RouteId) -> Access {
    spec(id).access
}

/// Whether `role` may call the route (ignoring the loopback exception).
pub fn allows(id: RouteId, role: Role) -> bool {
    match access(id) {
        Public | AnyUser => true,
        Roles(rs) | LoopbackOr(rs) => rs.contains(&role),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for s in ROUTES {
            assert!(seen.insert(s.id), "{:?} listed twice", s.id);
            assert!(seen.len() <= ROUTES.len());
        }
        assert_eq!(spec(AuditList).path, "/api/v1/audit");
    }

    /// Every `RouteId` has a row: the match is exhaustive, so a new variant without a row here
    /// fails to compile, and one without a row in ROUTES fails this test.
    #[test]
    fn every_route_id_has_a_row() {
        fn all() -> Vec<RouteId> {
            let witness = |id: RouteId| match id {
                Healthz
                | OpenApi
                | Metrics
                | Login
                | Logout
                | Me
                | ChangePassword
                | CustomersCreate
                | CustomersList
                | CustomersGet
                | VehiclesCreate
                | VehiclesGet
                | CasesCreate
                | CasesList
                | CasesGet
                | CasesTransition
                | CasesEscalate
                | CasesHandBack
                | CasesAssign
                | CasesMessagesPost
                | CasesMessagesList
                | CasesEstimateCreate
                | CasesEstimateGet
                | CasesEstimateExplain
                | CasesFindings
                | CasesFindingsAdd
                | CasesPhotosWaive
                | CasesApprove
                | SlotsList
                | CasesAppointmentGet
                | CasesAppointmentBook
                | CasesAppointmentCancel
                | FindingsReview
                | FindingsMeasure
                | PhotosUpload
                | PhotosGet
                | PhotosAnalysis
                | PhotosAnnotated
                | PhotosBlurred
                | UsersList
                | UsersCreate
                | UsersDisable
                | UsersEnable
                | UsersResetPassword
                | AuditList
                | SyncStatus
                | LlmStatus
                | PrivacyFind
                | PrivacyExport
                | PrivacyErase
                | CasesLegalHold
                | ProtectionStatus
                | WorkshopBoard
                | WorkshopFlags
                | WorkshopFlagSettle
                | CasesWorkshop
                | CasesWorkshopPhotos
                | CasesBaselineMark
                | CasesBaselineSign
                | CasesWorkOrderStart
                | CasesWorkOrderFinish
                | WorkOrderLineClock
                | ClockEntryCorrect
                | CasesPartsScan
                | CasesQcCompare
                | CasesQcReport
                | CasesQcReportPdf
                | FollowUpsList
                | FollowUpConsentText
                | FollowUpAlerts
                | FollowUpAlertRespond
                | FollowUpAlertResolve
                | CasesFollowUp
                | CasesFollowUpAnswer
                | CasesFollowUpAttempt
                | CasesConsent
                | CustomersConsentRevoke
                | KpiFigures
                | KpiReportPdf
                | KpiSnapshot
                | ImportsMappings
                | ImportsRun => id,
            };
            [
                Healthz,
                OpenApi,
                Metrics,
                Login,
                Logout,
                Me,
                ChangePassword,
                CustomersCreate,
                CustomersList,
                CustomersGet,
                VehiclesCreate,
                VehiclesGet,
                CasesCreate,
                CasesList,
                CasesGet,
                CasesTransition,
                CasesEscalate,
                CasesHandBack,
                CasesAssign,
                CasesMessagesPost,
                CasesMessagesList,
                CasesEstimateCreate,
                CasesEstimateGet,
                CasesEstimateExplain,
                CasesFindings,
                CasesFindingsAdd,
                CasesPhotosWaive,
                CasesApprove,
                SlotsList,
                CasesAppointmentGet,
                CasesAppointmentBook,
                CasesAppointmentCancel,
                FindingsReview,
                FindingsMeasure,
                PhotosUpload,
                PhotosGet,
                PhotosAnalysis,
                PhotosAnnotated,
                PhotosBlurred,
                UsersList,
                UsersCreate,
                UsersDisable,
                UsersEnable,
                UsersResetPassword,
                AuditList,
                SyncStatus,
                LlmStatus,
                PrivacyFind,
                PrivacyExport,
                PrivacyErase,
                CasesLegalHold,
                ProtectionStatus,
                WorkshopBoard,
                WorkshopFlags,
                WorkshopFlagSettle,
                CasesWorkshop,
                CasesWorkshopPhotos,
                CasesBaselineMark,
                CasesBaselineSign,
                CasesWorkOrderStart,
                CasesWorkOrderFinish,
                WorkOrderLineClock,
                ClockEntryCorrect,
                CasesPartsScan,
                CasesQcCompare,
                CasesQcReport,
                CasesQcReportPdf,
                FollowUpsList,
                FollowUpConsentText,
                FollowUpAlerts,
                FollowUpAlertRespond,
                FollowUpAlertResolve,
                CasesFollowUp,
                CasesFollowUpAnswer,
                CasesFollowUpAttempt,
                CasesConsent,
                CustomersConsentRevoke,
                KpiFigures,
                KpiReportPdf,
                KpiSnapshot,
                ImportsMappings,
                ImportsRun,
            ]
            .into_iter()
            .map(witness)
            .collect()
        }
        let ids = all();
        assert_eq!(ids.len(), ROUTES.len(), "ROUTES and RouteId differ in size");
        for id in ids {
            assert!(ROUTES.iter().any(|s| s.id == id), "{id:?} has no row in ROUTES");
        }
    }

    #[test]
    fn hq_auditor_is_read_only() {
        for s in ROUTES.iter().filter(|s| s.method != "GET" && !matches!(s.access, Public | AnyUser)) {
            assert!(!allows(s.id, HqAuditor), "{} {} lets hq_auditor write", s.method, s.path);
        }
    }
}
