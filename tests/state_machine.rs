//! Property test of the case status machine: random sequences of (role, requested status) from the
//! start, checked against the invariants stated at the top of `domain::case`.

use proptest::prelude::*;
use servicebay::domain::case::{allowed_next, hand_back, transition};
use servicebay::domain::{CaseStatus, Role, TransitionError};

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
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
