//! Property test of the case status machine: random sequences of (role, requested status) from the
//! start, checked against the invariants stated at the top of `domain::case`.

use proptest::prelude::*;
use servicebay::domain::case::{allowed_next, hand_back, manual_transition, requires, stage_of, stage_transition, transition, Facts};
use servicebay::domain::{CaseStatus, Role, TransitionError};

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn facts() -> impl Strategy<Value = Facts> {
    let front = (0u32..3, prop::sample::select(vec![0u32, 3]), 0u32..5, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>());
    let workshop = (any::<bool>(), any::<bool>(), 0u32..2, any::<bool>(), 0u32..2);
    let follow_up = (any::<bool>(), 0u32..2);
    (front, workshop, follow_up).prop_map(
        |(
            (findings, photos_needed, photos_passed, photos_waived, estimate, approved, appointment),
            (baseline_signed, work_order, labour_open, qc_passed, alerts_open),
            (follow_up_done, hot_alerts_open),
        )| Facts {
            findings,
            photos_needed,
            photos_passed,
            photos_waived,
            estimate,
            approved,
            appointment,
            baseline_signed,
            work_order,
            labour_open,
            qc_passed,
            alerts_open,
            follow_up_done,
            hot_alerts_open,
        },
    )
}

fn status() -> impl Strategy<Value = CaseStatus> {
    prop::sample::select(CaseStatus::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn invariants_hold_for_any_sequence(steps in prop::collection::vec((role(), status(), any::<bool>()), 1..60)) {
        let (mut cur, mut prior) = (CaseStatus::Reported, None::<CaseStatus>);
        for (role, to, try_hand_back) in steps {
            let result = if try_hand_back { hand_back(role, cur, prior) } else { transition(role, cur, prior, to) };
            match result {
                Ok(t) => {
                    // Only listed moves happen, never out of a terminal state.
                    prop_assert!(!cur.is_terminal());
                    prop_assert!(allowed_next(cur, prior).contains(&t.to));
                    prop_assert!(role != Role::HqAuditor);
                    // A paused case remembers a working (non-pause, non-terminal) status.
                    if t.to.is_pause() {
                        let p = t.prior.expect("pause remembers where it was");
                        prop_assert!(!p.is_pause() && !p.is_terminal());
                    } else {
                        prop_assert_eq!(t.prior, None);
                    }
                    // Handing back returns exactly to the remembered status.
                    if try_hand_back {
                        prop_assert_eq!(Some(t.to), prior);
                    }
                    cur = t.to;
                    prior = t.prior;
                }
                Err(TransitionError::Illegal { current, allowed, .. }) => {
                    prop_assert_eq!(current, cur);
                    prop_assert_eq!(allowed, allowed_next(cur, prior));
                    prop_assert!(!allowed_next(cur, prior).contains(&to));
                }
                Err(TransitionError::Forbidden { .. }) => {}
                Err(TransitionError::NotPaused { current }) => prop_assert!(!current.is_pause() || prior.is_none()),
                Err(e) => prop_assert!(false, "the plain table never answers {e:?}"),
            }
        }
    }

    /// The stage guards: whatever people ask by hand and whatever the stages try with whatever the
    /// case has, a stage's move happens only through its stage and only when its preconditions
    /// hold — above all, nothing reaches `scheduled` without an approval and an appointment.
    #[test]
    fn stage_moves_happen_only_through_stages_with_their_preconditions(
        steps in prop::collection::vec((role(), status(), any::<bool>(), facts()), 1..80)
    ) {
        let (mut cur, mut prior) = (CaseStatus::Reported, None::<CaseStatus>);
        for (role, to, by_stage, f) in steps {
            let result = if by_stage { stage_transition(cur, prior, to, &f) } else { manual_transition(role, cur, prior, to) };
            match result {
                Ok(t) => {
                    prop_assert!(allowed_next(cur, prior).contains(&t.to));
                    if by_stage {
                        prop_assert!(stage_of(cur, t.to).is_some());
                        prop_assert!(requires(t.to, &f).is_empty());
                        if t.to == CaseStatus::Scheduled {
                            prop_assert!(f.approved && f.appointment);
                        }
                        if t.to == CaseStatus::InRepair {
                            prop_assert!(f.approved && f.baseline_signed);
                        }
                        if t.to == CaseStatus::Delivered {
                            prop_assert!(f.qc_passed && f.alerts_open == 0);
                        }
                        if t.to == CaseStatus::FollowUp {
                            prop_assert!(f.follow_up_done);
                        }
                        if t.to == CaseStatus::Closed {
                            prop_assert!(f.hot_alerts_open == 0, "no case closes over an open hot alert");
                        }
                        if t.to == CaseStatus::Assessed {
                            prop_assert!(f.findings > 0 && (f.photos_waived || f.photos_passed >= f.photos_needed));
                        }
                    } else {
                        prop_assert!(stage_of(cur, t.to).is_none(), "{cur} → {} by hand", t.to);
                    }
                    cur = t.to;
                    prior = t.prior;
                }
                Err(TransitionError::StageOwned { current, to: asked, .. }) => {
                    prop_assert!(!by_stage);
                    prop_assert!(stage_of(current, asked).is_some());
                }
                Err(TransitionError::Precondition { to: asked, missing, .. }) => {
                    prop_assert!(by_stage);
                    prop_assert_eq!(missing, requires(asked, &f));
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn escalation_is_one_step_from_every_open_status_for_every_staff_role(
        s in prop::sample::select(CaseStatus::ALL.into_iter().filter(|s| !s.is_terminal() && *s != CaseStatus::Escalated).collect::<Vec<_>>()),
        r in prop::sample::select(Role::ALL.into_iter().filter(|r| *r != Role::HqAuditor).collect::<Vec<_>>()),
    ) {
        let prior = if s == CaseStatus::OnHold { Some(CaseStatus::InRepair) } else { None };
        let t = transition(r, s, prior, CaseStatus::Escalated).unwrap();
        prop_assert_eq!(t.to, CaseStatus::Escalated);
        let back = hand_back(Role::Advisor, t.to, t.prior).unwrap();
        prop_assert_eq!(back.to, prior.unwrap_or(s));
    }
}
